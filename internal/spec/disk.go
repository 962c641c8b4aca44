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

// A word and a colon before something that is not a letter or digit is
// a prefix, known or not (libxlu's rule): "foo:/dev/x" has an unknown
// one, while "rbd:pool/img" is a target in QEMU's protocol syntax.
var prefixRE = regexp.MustCompile(`^([a-z][a-z0-9]*):([^a-z0-9]|$)`)

// The prefixes that name a network disk's Xen hotplug script.
var scriptPrefixRE = regexp.MustCompile(`^(iscsi|e?nbd|drbd):`)

// Note is something a spec parser says about a spec it accepts: a Xen
// setting that means nothing here, or a form only this reader takes.
type Note struct {
	Msg string
	// NotXL: xl itself refuses this form (a domain file's --strict check
	// makes it an error).
	NotXL bool
}

// ParseDisk parses one xl-disk-configuration(5) spec the way libxlu
// does, and says what it accepts but cannot honour (notes).
//
// It reads in three steps: the key=value items, then the positional
// fields (with xend's prefixes), then the checks and defaults that need
// them all.
func ParseDisk(s string) (api.Disk, []Note, error) {
	var disk api.Disk
	var notes []Note
	positional, err := diskItems(&disk, &notes, s)
	if err != nil {
		return disk, notes, err
	}
	if len(positional) > 0 {
		if err := diskPositional(&disk, positional, s); err != nil {
			return disk, notes, err
		}
	}
	if err := diskFinish(&disk, &notes, s); err != nil {
		return disk, notes, err
	}
	return disk, notes, nil
}

// diskItems reads the comma-separated items of s into disk and returns
// the positional ones (neither key=value nor a flag) in order. As in
// libxlu an empty item is an empty positional field ("/x,,hda" leaves
// the format to its default), the comma that ends the spec makes no
// field, and blanks before an item are skipped.
func diskItems(disk *api.Disk, notes *[]Note, s string) ([]string, error) {
	var positional []string
	items := strings.Split(s, ",")
	if len(items) > 1 && items[len(items)-1] == "" {
		items = items[:len(items)-1]
	}
	for i := 0; i < len(items); i++ {
		f := strings.TrimLeft(items[i], " \t\n")
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
		if err := diskKey(disk, notes, k, val, s); err != nil {
			return nil, err
		}
	}
	return positional, nil
}

// diskKey applies one key=value item (target= aside) of s.
func diskKey(disk *api.Disk, notes *[]Note, k, val, s string) error {
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
		return diskScript(val)
	case "backend":
		*notes = append(*notes, Note{Msg: fmt.Sprintf("backend=%s (a Xen driver domain) is not used: the host serves this disk itself", val)})
	case "backendtype", "specification":
		// Which Xen backend serves the disk (phy, qdisk, tap) or which
		// protocol the guest speaks: on KVM QEMU is always the backend
		// and the guest sees virtio, whatever the value.
	default:
		return fmt.Errorf("unknown key %q in %q (keys: target, vdev, access, format, devtype, iops, bps)", k, s)
	}
	return nil
}

// diskScript refuses a block hotplug script: KVM runs none. The network
// ones have their own message (see networkTarget).
func diskScript(val string) error {
	if scheme, ok := strings.CutPrefix(val, "block-"); ok {
		if err := networkTarget(scheme); err != nil {
			return err
		}
	}
	return fmt.Errorf("script=%s: block hotplug scripts are not run on KVM; give the block device itself as the target", val)
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
		if m := scriptPrefixRE.FindStringSubmatch(t); m != nil {
			return t, legacy, networkTarget(m[1])
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
		if known {
			continue
		}
		if m := prefixRE.FindStringSubmatch(t); m != nil {
			if err := networkTarget(m[1]); err != nil {
				return t, legacy, err
			}
			return t, legacy, fmt.Errorf("unknown prefix %q in %q (known: phy:, file:, tap:aio:, raw:, qcow2:, vhd:)", m[1]+":", s)
		}
		return t, legacy, nil
	}
}

// networkFixes say, per network scheme, how to give the disk to a KVM
// host: attached on the host, as a block device.
var networkFixes = map[string]string{
	"nbd":   "attach it on the host (nbd-client HOST PORT /dev/nbd0) and give /dev/nbd0",
	"enbd":  "attach it on the host (nbd-client HOST PORT /dev/nbd0) and give /dev/nbd0",
	"iscsi": "log in on the host (iscsiadm -m node -T IQN -p PORTAL --login) and give its /dev/disk/by-path/... device",
	"drbd":  "bring the resource up on the host (drbdadm up RESOURCE) and give its /dev/drbdN device",
	"rbd":   "map the image on the host (rbd map POOL/IMAGE) and give its /dev/rbd/POOL/IMAGE device",
}

// networkTarget refuses a disk served over the network, by scheme: Xen
// reaches it with a hotplug script (or its QEMU), which Ringfence does
// not run.
func networkTarget(scheme string) error {
	fix, ok := networkFixes[scheme]
	if !ok {
		return nil
	}
	return fmt.Errorf("%s: targets are reached by Xen's block-%s hotplug script (or its QEMU), which KVM here does not run: %s", scheme, scheme, fix)
}

// diskFinish applies the rules that need every field read: xend's vdev
// markers, the format, the access mode and the vdev's and target's form.
func diskFinish(disk *api.Disk, notes *[]Note, s string) error {
	disk.VDev = strings.TrimPrefix(disk.VDev, "ioemu:") // xend's "emulated" marker
	for _, suffix := range []string{":cdrom", ":disk"} {
		if vd, ok := strings.CutSuffix(disk.VDev, suffix); ok {
			disk.VDev = vd
			disk.CDROM = disk.CDROM || suffix == ":cdrom"
		}
	}
	if disk.Format != "" && !diskFormats[disk.Format] {
		return fmt.Errorf("format %q: use raw, qcow2, qcow, vhd or qed", disk.Format)
	}
	switch disk.Access {
	case "", "w", "rw":
		disk.Access = "rw"
	case "w!":
		disk.Access = "rw"
		*notes = append(*notes, Note{Msg: "access w! (xm's shared-writable, which xl refuses) is treated as w: two domains writing one disk corrupts it", NotXL: true})
	case "r", "ro":
		disk.Access = "ro"
	default:
		return fmt.Errorf("access %q: use r (read-only) or w (read-write)", disk.Access)
	}
	if disk.CDROM {
		disk.Access = "ro"
	}
	if !vdevRE.MatchString(disk.VDev) {
		hint := ""
		if vdevRE.MatchString(strings.TrimPrefix(disk.Target, "/dev/")) {
			hint = " (after a prefix the fields are TARGET,VDEV,ACCESS: the vdev goes second, the path first)"
		}
		return fmt.Errorf("vdev %q in %q is not a disk name like xvda, hda or sdb%s", disk.VDev, s, hint)
	}
	if disk.Target == "" && !disk.CDROM {
		return fmt.Errorf("no target path in %q", s)
	}
	if scheme, _, ok := strings.Cut(disk.Target, ":"); ok && !strings.HasPrefix(disk.Target, "/") {
		if err := networkTarget(scheme); err != nil {
			return err
		}
	}
	if disk.Target != "" {
		if err := AbsPath(disk.Target); err != nil {
			return err
		}
	}
	return nil
}
