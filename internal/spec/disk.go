package spec

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
)

var vdevRE = regexp.MustCompile(`^(xvd|hd|sd|vd)[a-z]{1,2}[0-9]*$`)

// Disk formats xl knows; the engine maps them to QEMU's names.
var diskFormats = map[string]bool{"raw": true, "qcow": true, "qcow2": true, "vhd": true, "qed": true}

// Legacy (xend) prefixes: stripped, some set the format, they may stack.
var diskPrefixes = []struct{ prefix, format string }{
	{"phy:", ""}, {"file:", ""}, {"tap:", ""}, {"tap2:", ""}, {"aio:", ""}, {"tapdisk:", ""}, {"ioemu:", ""},
	{"raw:", "raw"}, {"qcow:", "qcow"}, {"qcow2:", "qcow2"}, {"vhd:", "vhd"},
}

var prefixRE = regexp.MustCompile(`^([a-z0-9]+):`)

// ParseDisk parses one xl-disk-configuration(5) spec. It returns a
// warning (or "") for forms it accepts but xl would not.
//
// It reads in three steps: the key=value items, then the positional
// fields (with xend's prefixes), then the checks and defaults that need
// them all.
func ParseDisk(s string) (api.Disk, string, error) {
	var disk api.Disk
	positional, err := diskItems(&disk, s)
	if err != nil {
		return disk, "", err
	}
	if len(positional) > 0 {
		if err := diskPositional(&disk, positional, s); err != nil {
			return disk, "", err
		}
	}
	warn, err := diskFinish(&disk, s)
	if err != nil {
		return disk, "", err
	}
	return disk, warn, nil
}

// diskItems reads the comma-separated items of s into disk and returns
// the positional ones (neither key=value nor a flag) in order.
func diskItems(disk *api.Disk, s string) ([]string, error) {
	var positional []string
	items := strings.Split(s, ",")
	for i := 0; i < len(items); i++ {
		f := strings.TrimLeft(items[i], " \t")
		if strings.HasPrefix(f, "target=") {
			// target= is last and takes the rest, commas included.
			disk.Target = strings.TrimPrefix(strings.Join(append([]string{f}, items[i+1:]...), ","), "target=")
			break
		}
		k, val, isKV := strings.Cut(f, "=")
		if !isKV {
			switch f {
			case "cdrom":
				disk.CDROM = true
			case "discard", "no-discard", "direct-io-safe", "trusted", "untrusted":
			default:
				positional = append(positional, f)
			}
			continue
		}
		if err := diskKey(disk, k, val, s); err != nil {
			return nil, err
		}
	}
	return positional, nil
}

// diskKey applies one key=value item (target= aside) of s.
func diskKey(disk *api.Disk, k, val, s string) error {
	switch k {
	case "vdev":
		disk.VDev = val
	case "access":
		disk.Access = val
	case "format":
		disk.Format = val
	case "devtype":
		if val != "cdrom" && val != "disk" {
			return fmt.Errorf("devtype %q: use cdrom or disk", val)
		}
		disk.CDROM = val == "cdrom"
	case "iops":
		n, err := strconv.Atoi(val)
		if err != nil || n <= 0 {
			return fmt.Errorf("iops=%s: a whole number of I/O operations per second, e.g. iops=500", val)
		}
		disk.IOPS = n
	case "bps":
		n, err := ParseSize(val)
		if err != nil {
			return fmt.Errorf("bps=%s: bytes per second with an optional k, m or g suffix, e.g. bps=50m", val)
		}
		disk.BPS = n
	case "script":
		return fmt.Errorf("script=%s: block hotplug scripts are not supported on KVM; give the block device itself as the target", val)
	case "backendtype", "backend", "specification":
	default:
		return fmt.Errorf("unknown key %q in %q (keys: target, vdev, access, format, devtype)", k, s)
	}
	return nil
}

// diskPositional reads the positional fields of s: TARGET,FORMAT,VDEV,
// ACCESS in xl's form, TARGET,VDEV,ACCESS after an xend prefix.
func diskPositional(disk *api.Disk, positional []string, s string) error {
	t, legacy, err := stripDiskPrefixes(disk, positional[0], s)
	if err != nil {
		return err
	}
	positional[0] = t
	if len(positional) > 1 && (strings.HasSuffix(positional[1], ":cdrom") || strings.HasSuffix(positional[1], ":disk")) {
		legacy = true // `,hdc:cdrom,r`: xend's vdev:type form
	}
	fields := []*string{&disk.Target, &disk.Format, &disk.VDev, &disk.Access}
	if legacy {
		// After a prefix the second field is the vdev (xend's form).
		fields = []*string{&disk.Target, &disk.VDev, &disk.Access}
	}
	if len(positional) > len(fields) {
		if legacy {
			return fmt.Errorf("%q has %d fields; the form is PREFIX:TARGET,VDEV,ACCESS (xm's 4th backend-domain field is not supported)", s, len(positional))
		}
		return fmt.Errorf("%q has %d positional fields; the form is TARGET,FORMAT,VDEV,ACCESS", s, len(positional))
	}
	for i, v := range positional {
		if v != "" {
			*fields[i] = v
		}
	}
	if !legacy && len(positional) > 1 && !diskFormats[disk.Format] && vdevRE.MatchString(strings.TrimSuffix(positional[1], ":cdrom")) {
		return fmt.Errorf("%q: without a prefix the fields are TARGET,FORMAT,VDEV,ACCESS, so %q was read as a format; write 'phy:%s' (prefix form: TARGET,VDEV,ACCESS) or '%s,raw,%s'",
			s, positional[1], s, positional[0], strings.Join(positional[1:], ","))
	}
	return nil
}

// stripDiskPrefixes strips xend's prefixes (they may stack: tap:aio:)
// from the target t, setting the format some of them imply. legacy says
// whether there was one.
func stripDiskPrefixes(disk *api.Disk, t, s string) (string, bool, error) {
	legacy := false
	for {
		m := prefixRE.FindStringSubmatch(t)
		if m == nil {
			return t, legacy, nil
		}
		known := false
		for _, p := range diskPrefixes {
			if strings.HasPrefix(t, p.prefix) {
				t = strings.TrimPrefix(t, p.prefix)
				if p.prefix == "phy:" && t != "" && !strings.HasPrefix(t, "/") {
					t = "/dev/" + t // xl's hotplug script does this
				}
				if p.format != "" && disk.Format == "" {
					disk.Format = p.format
				}
				known, legacy = true, true
				break
			}
		}
		if !known {
			switch m[1] {
			case "iscsi", "nbd", "enbd", "drbd":
				return t, legacy, fmt.Errorf("%s: targets need Xen's block-%s hotplug script, which KVM does not run: attach the device on the host and give its /dev path", m[1], m[1])
			}
			return t, legacy, fmt.Errorf("unknown prefix %q in %q (known: phy:, file:, tap:aio:, raw:, qcow2:, vhd:)", m[0], s)
		}
	}
}

// diskFinish applies the rules that need every field read: xend's vdev
// markers, the format, the access mode and the vdev's and target's form.
func diskFinish(disk *api.Disk, s string) (string, error) {
	var warn string
	disk.VDev = strings.TrimPrefix(disk.VDev, "ioemu:") // xend's "emulated" marker
	for _, suffix := range []string{":cdrom", ":disk"} {
		if vd, ok := strings.CutSuffix(disk.VDev, suffix); ok {
			disk.VDev = vd
			disk.CDROM = disk.CDROM || suffix == ":cdrom"
		}
	}
	if disk.Format != "" && !diskFormats[disk.Format] {
		return "", fmt.Errorf("format %q: use raw, qcow2, qcow, vhd or qed", disk.Format)
	}
	switch disk.Access {
	case "", "w", "rw":
		disk.Access = "rw"
	case "w!":
		disk.Access = "rw"
		warn = "access w! (xm's shared-writable) is treated as w: two domains writing one disk corrupts it"
	case "r", "ro":
		disk.Access = "ro"
	default:
		return "", fmt.Errorf("access %q: use r (read-only) or w (read-write)", disk.Access)
	}
	if disk.CDROM {
		disk.Access = "ro"
	}
	if !vdevRE.MatchString(disk.VDev) {
		hint := ""
		if vdevRE.MatchString(strings.TrimPrefix(disk.Target, "/dev/")) {
			hint = " (after a prefix the fields are TARGET,VDEV,ACCESS: the vdev goes second, the path first)"
		}
		return "", fmt.Errorf("vdev %q in %q is not a disk name like xvda, hda or sdb%s", disk.VDev, s, hint)
	}
	if disk.Target == "" && !disk.CDROM {
		return "", fmt.Errorf("no target path in %q", s)
	}
	if disk.Target != "" {
		if err := AbsPath(disk.Target); err != nil {
			return "", err
		}
	}
	return warn, nil
}
