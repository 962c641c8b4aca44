package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/spec"
)

// Warning is a non-fatal diagnostic.
type Warning struct {
	Pos Pos
	Msg string
}

func (w Warning) String() string { return w.Pos.String() + ": warning: " + w.Msg }

// decoder carries the spec being built and the diagnostics so far.
type decoder struct {
	spec      api.DomainSpec
	warnings  []Warning
	root      string
	extra     string
	cmdline   string
	hasCmd    bool
	cmdPos    Pos // where root/extra/cmdline was set, for mapping warnings
	kernelPos Pos
	vnc       vncNotes
}

type keyRule struct {
	doc   string
	apply func(d *decoder, v Value) error
}

// keys is the table of understood settings. Growing xl.cfg coverage means
// adding rows here.
var keys = map[string]keyRule{
	"name":        {"domain name", func(d *decoder, v Value) error { return str(v, &d.spec.Name, spec.ValidName) }},
	"uuid":        {"domain UUID", func(d *decoder, v Value) error { return str(v, &d.spec.UUID, spec.ValidUUID) }},
	"type":        {"pv, pvh or hvm", func(d *decoder, v Value) error { return str(v, &d.spec.Type, spec.ValidType) }},
	"builder":     {"legacy name for type (generic = pv)", decodeBuilder},
	"memory":      {"guest RAM in MiB", func(d *decoder, v Value) error { return num(v, &d.spec.MemoryMiB, spec.MemoryRange) }},
	"maxmem":      {"maximum RAM in MiB", func(d *decoder, v Value) error { return num(v, &d.spec.MaxMemMiB, spec.MemoryRange) }},
	"vcpus":       {"virtual CPUs at boot", func(d *decoder, v Value) error { return num(v, &d.spec.VCPUs, spec.VCPURange) }},
	"maxvcpus":    {"maximum virtual CPUs", func(d *decoder, v Value) error { return num(v, &d.spec.MaxVCPUs, spec.VCPURange) }},
	"kernel":      {"kernel for direct boot", func(d *decoder, v Value) error { return str(v, &d.spec.Kernel, spec.AbsPath) }},
	"ramdisk":     {"initial ramdisk", func(d *decoder, v Value) error { return str(v, &d.spec.Ramdisk, spec.AbsPath) }},
	"cmdline":     {"kernel command line", func(d *decoder, v Value) error { d.hasCmd = true; return str(v, &d.cmdline, spec.SafeText) }},
	"extra":       {"appended to the command line", func(d *decoder, v Value) error { return str(v, &d.extra, spec.SafeText) }},
	"root":        {"root= for the command line", func(d *decoder, v Value) error { return str(v, &d.root, spec.SafeText) }},
	"on_poweroff": {"action on power off", func(d *decoder, v Value) error { return str(v, &d.spec.OnPoweroff, spec.ValidAction) }},
	"on_reboot":   {"action on reboot", func(d *decoder, v Value) error { return str(v, &d.spec.OnReboot, spec.ValidAction) }},
	"on_crash":    {"action on crash", func(d *decoder, v Value) error { return str(v, &d.spec.OnCrash, spec.ValidAction) }},
	"accel":       {"ringfence: force kvm or tcg", func(d *decoder, v Value) error { return str(v, &d.spec.Accel, spec.ValidAccel) }},
	"on_watchdog": {"action when the watchdog fires", func(d *decoder, v Value) error { return str(v, &d.spec.OnWatchdog, spec.ValidAction) }},
	"on_soft_reset": {"action on soft reset (kexec); ringfence restarts", func(d *decoder, v Value) error {
		var a string
		return str(v, &a, spec.ValidAction)
	}},
	"cpus":          {"hard CPU affinity (CPULIST)", decodeCPUs},
	"hotplug_slots": {"PCIe slots for disks/NICs attached while running, 0..8 (Ringfence)", func(d *decoder, v Value) error { return num(v, &d.spec.HotplugSlots, spec.HotplugSlotsRange) }},
	"cpu_weight":    {"credit scheduler weight 1..65535", func(d *decoder, v Value) error { return num(v, &d.spec.CPUWeight, spec.CPUWeightRange) }},
	"cap":           {"CPU cap in percent of one host CPU (0 = none)", func(d *decoder, v Value) error { return num(v, &d.spec.Cap, spec.CapRange) }},
	"bootloader":    {"pygrub: boot the disk's own bootloader", func(d *decoder, v Value) error { return str(v, &d.spec.Bootloader, spec.ValidBootloader) }},
	"boot":          {"firmware boot order: c disk, d cdrom, n network", func(d *decoder, v Value) error { return str(v, &d.spec.Boot, spec.ValidBoot) }},
	"localtime": {"RTC in host local time (1) or UTC (0)", func(d *decoder, v Value) error {
		var n int
		err := num(v, &n, switchRange)
		d.spec.Localtime = n == 1
		return err
	}},
	"rtc_timeoffset": {"RTC offset from UTC in seconds", func(d *decoder, v Value) error { return num(v, &d.spec.RTCOffsetSec, spec.RTCOffsetRange) }},
	"disk":           {"list of disk specs", decodeDisks},
	"persistent": {"Ringfence: 1 = create also defines it (kept across stops and host reboots)", func(d *decoder, v Value) error {
		var n int
		err := num(v, &n, switchRange)
		d.spec.Persistent = n == 1
		return err
	}},
	"vif": {"list of vif specs", decodeVifs},

	// xl's VNC settings (vnc.go).
	"vnc":        {"1 = a display served over VNC through the daemon (`ringfence vnc NAME`), never a host port", decodeVNC},
	"vncpasswd":  {"the VNC display's password (RFB, at most 8 characters)", decodeVNCPassword},
	"vnclisten":  vncHostKey("vnclisten"),
	"vncdisplay": vncHostKey("vncdisplay"),
	"vncunused":  vncHostKey("vncunused"),
	"vncconsole": vncHostKey("vncconsole"),
}

// ignored are keys a hosting admin uses that mean nothing under Ringfence
// (yet): accepted with a warning that says why.
var ignored = map[string]string{
	"serial":    "the first serial port is always ringfence's console (`ringfence console`)",
	"sdl":       "no local display on a server",
	"keymap":    "the VNC viewer sends the keys (RFB key events); no keymap is needed",
	"vfb":       "write vnc = 1 (and vncpasswd) at the top level: the display is the same for every type",
	"usb":       "no USB controller in ringfence's device model",
	"usbdevice": "no USB controller in ringfence's device model",
	"pci":       "PCI passthrough is not supported yet",
	"cpus_soft": "only hard affinity (cpus=) is used",
	"cpu_cap":   "this is xm's spelling, which xl ignores too: write cap = N",
	"acpi":      "ACPI is always on (the power button is how shutdown works)",
	"apic":      "always on", "pae": "always on", "hap": "hardware paging is KVM's default",
	"viridian": "no Hyper-V enlightenments", "nestedhvm": "nested virtualization is not offered",
	"device_model_version": "QEMU is always the device model", "device_model_override": "QEMU is always the device model",
	"xen_platform_pci": "no Xen platform device under KVM", "vif2": "use vif", "tsc_mode": "KVM manages the TSC",
	"stdvga": "no graphics", "vga": "no graphics", "videoram": "no graphics", "nographic": "there are no graphics anyway",
	"soundhw": "no sound", "extid": "no Xen extensions", "vcpu_avail": "xm-only; use vcpus/maxvcpus",
	"cpu": "xm-only; use cpus", "dhcp": "xm-only; configure networking inside the guest",
	"bootloader_args": "pygrub's arguments are not needed: the firmware reads the disk's own bootloader",
}

// Load reads and decodes a domain file.
func Load(path string) (api.DomainSpec, []Warning, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return api.DomainSpec{}, nil, fmt.Errorf("reading domain file: %w", err)
	}
	return Decode(path, src)
}

// Decode parses src and turns it into a validated spec with defaults
// applied (xl's, see spec.Normalize).
func Decode(file string, src []byte) (api.DomainSpec, []Warning, error) {
	settings, err := Parse(file, src)
	if err != nil {
		return api.DomainSpec{}, nil, err
	}
	settings, err = merge(settings)
	if err != nil {
		return api.DomainSpec{}, nil, err
	}
	d := &decoder{}
	for _, s := range settings {
		if s.Value.Kind == Number && s.Value.Octal {
			d.warnings = append(d.warnings, Warning{s.Value.Pos, fmt.Sprintf("%s = %s: a leading 0 makes it octal in xl (%d); drop the 0 if you meant %s", s.Key, s.Value.Str, s.Value.Num, strings.TrimLeft(s.Value.Str, "0"))})
		}
		rule, ok := keys[s.Key]
		if !ok {
			why := "it has no meaning on KVM"
			if r, known := ignored[s.Key]; known {
				why = r
			}
			d.warnings = append(d.warnings, Warning{s.Pos, fmt.Sprintf("%q is ignored: %s", s.Key, why)})
			continue
		}
		if s.Key == "root" || s.Key == "extra" || s.Key == "cmdline" {
			d.cmdPos = s.Value.Pos
		}
		if s.Key == "kernel" {
			d.kernelPos = s.Value.Pos
		}
		if err := rule.apply(d, s.Value); err != nil {
			var pe *Error
			if errors.As(err, &pe) {
				return api.DomainSpec{}, d.warnings, pe
			}
			return api.DomainSpec{}, d.warnings, &Error{Pos: s.Value.Pos, Msg: fmt.Sprintf("%s: %v", s.Key, err)}
		}
	}
	if d.spec.Name == "" {
		return api.DomainSpec{}, d.warnings, &Error{Pos: Pos{File: file, Line: 1, Col: 1}, Msg: "name is required: add a line like `name = \"web01\"`"}
	}
	d.finishVNC()
	if base := filepath.Base(d.spec.Kernel); d.spec.Kernel != "" && base == "hvmloader" {
		d.warnings = append(d.warnings, Warning{d.kernelPos, "kernel = hvmloader is Xen's HVM firmware: ignored, the domain boots through firmware as type hvm"})
		d.spec.Kernel, d.spec.Type = "", "hvm"
	} else if strings.HasPrefix(base, "pv-grub") || strings.HasPrefix(base, "pvgrub") {
		d.warnings = append(d.warnings, Warning{d.kernelPos, "kernel = " + base + " is Xen's PV GRUB, which cannot run under KVM: the firmware boots the disk's own GRUB instead (as bootloader = 'pygrub')"})
		d.spec.Kernel, d.spec.Ramdisk, d.spec.Bootloader = "", "", "pvgrub"
		d.extra, d.root, d.cmdline, d.hasCmd = "", "", "", false
	}
	if !d.hasCmd {
		parts := []string{}
		if d.root != "" {
			parts = append(parts, "root="+d.root)
		}
		if d.extra != "" {
			parts = append(parts, d.extra)
		}
		d.cmdline = strings.Join(parts, " ")
	}
	for i := range d.spec.Disks {
		d.spec.Disks[i].Guest = spec.GuestDisk(i)
	}
	d.spec.Cmdline = d.mapCmdline(d.cmdline)
	if n := len(d.spec.Cmdline); n > spec.MaxCmdline {
		return api.DomainSpec{}, d.warnings, &Error{Pos: d.cmdPos, Msg: fmt.Sprintf("the kernel command line (root=, extra=, cmdline=) is %d bytes, over the %d an x86 kernel keeps with the console= Ringfence adds: the guest would cut it off silently; shorten it", n, spec.MaxCmdline)}
	}
	if err := spec.Normalize(&d.spec); err != nil {
		return api.DomainSpec{}, d.warnings, &Error{Pos: Pos{File: file, Line: 1, Col: 1}, Msg: err.Error()}
	}
	return d.spec, d.warnings, nil
}

// merge applies xl's rules for repeated keys: the last assignment wins and
// += appends to an earlier string or list. Each key keeps the position of
// its last assignment.
func merge(in []Setting) ([]Setting, error) {
	idx := map[string]int{}
	var out []Setting
	for _, s := range in {
		i, seen := idx[s.Key]
		if !seen {
			idx[s.Key] = len(out)
			if s.Append {
				s.Append = false
			}
			out = append(out, s)
			continue
		}
		if !s.Append {
			out[i] = s
			continue
		}
		prev := out[i].Value
		switch {
		case prev.Kind == List && s.Value.Kind == List:
			prev.Items = append(append([]Value(nil), prev.Items...), s.Value.Items...)
		case prev.Kind == String && s.Value.Kind == String:
			prev.Str += s.Value.Str
		default:
			return nil, &Error{Pos: s.Pos, Msg: fmt.Sprintf("%s += : += appends a list to a list or a string to a string", s.Key)}
		}
		out[i].Value = prev
	}
	return out, nil
}

// mapCmdline rewrites Xen device names on the kernel command line to the
// virtio names the guest will see, and says so.
func (d *decoder) mapCmdline(cmd string) string {
	fields := strings.Fields(cmd)
	for i, f := range fields {
		if dev, ok := strings.CutPrefix(f, "root=/dev/"); ok {
			if guest := d.guestDevice(dev); guest != "" && guest != dev {
				fields[i] = "root=/dev/" + guest
				d.warnings = append(d.warnings, Warning{d.cmdPos, fmt.Sprintf("root=/dev/%s rewritten to root=/dev/%s: that is the device the guest sees under KVM", dev, guest)})
			}
		}
		switch f {
		case "console=hvc0", "console=xvc0", "console=tty0":
			fields[i] = "console=ttyS0" // Xen's PV consoles -> our serial console
		}
	}
	return strings.Join(fields, " ")
}

// guestDevice maps a Xen device name from root= to the virtio name: a
// vdev listed as a disk (xvda1 -> vda: a partition vdev is a whole disk),
// or a partition of a whole-disk vdev (xvda + 2 -> vda2).
//
// Only Xen names are mapped: root=/dev/vdX already names what the guest
// sees, whatever a vdev happens to be called (and mapping it again would
// make the rewrite apply twice on export and re-parse).
func (d *decoder) guestDevice(dev string) string {
	if strings.HasPrefix(dev, "vd") {
		return ""
	}
	for _, disk := range d.spec.Disks {
		if dev == disk.VDev {
			return disk.Guest
		}
	}
	for _, disk := range d.spec.Disks {
		last := disk.VDev[len(disk.VDev)-1]
		if rest, ok := strings.CutPrefix(dev, disk.VDev); ok && rest != "" && !(last >= '0' && last <= '9') && strings.Trim(rest, "0123456789") == "" {
			return disk.Guest + rest
		}
	}
	return ""
}

var cpuListRE = regexp.MustCompile(`^(all|\^?(nodes?:)?[0-9]+(-[0-9]+)?(,\^?(nodes?:)?[0-9]+(-[0-9]+)?)*)$`)

// decodeCPUs reads cpus= as a CPULIST string; a per-vCPU list is joined
// (pinning each vCPU separately is the resources issue).
func decodeCPUs(d *decoder, v Value) error {
	var parts []string
	switch v.Kind {
	case String:
		parts = []string{v.Str}
	case Number:
		parts = []string{v.Str}
	case List:
		for _, it := range v.Items {
			if it.Kind == List {
				return fmt.Errorf("expected a CPU list string per vCPU")
			}
			parts = append(parts, it.Str)
		}
	}
	for _, p := range parts {
		if !cpuListRE.MatchString(strings.ReplaceAll(p, " ", "")) {
			return fmt.Errorf("%q is not a CPU list: use \"all\", \"2\", \"0-3\", \"0-7,^1\"", p)
		}
	}
	d.spec.CPUs = strings.Join(parts, ";")
	return nil
}

func str(v Value, dst *string, check func(string) error) error {
	if v.Kind != String {
		return fmt.Errorf("expected a quoted string")
	}
	if err := check(v.Str); err != nil {
		return err
	}
	*dst = v.Str
	return nil
}

// switchRange is the range of a 0/1 switch (localtime, persistent).
var switchRange = spec.Range{Lo: 0, Hi: 1}

func num(v Value, dst *int, r spec.Range) error {
	n := v.Num
	switch v.Kind {
	case Number:
	case String: // xl accepts quoted numbers
		if _, err := fmt.Sscanf(v.Str, "%d", &n); err != nil || fmt.Sprint(n) != strings.TrimSpace(v.Str) {
			return fmt.Errorf("%q is not a whole number", v.Str)
		}
	default:
		return fmt.Errorf("expected a number")
	}
	if n < r.Lo || n > r.Hi {
		return fmt.Errorf("%d is out of range %d..%d", n, r.Lo, r.Hi)
	}
	*dst = int(n)
	return nil
}

func decodeBuilder(d *decoder, v Value) error {
	var b string
	if err := str(v, &b, spec.OneOf("generic", "linux", "hvm")); err != nil {
		return err
	}
	if b == "hvm" {
		d.spec.Type = "hvm"
	} else {
		d.spec.Type = "pv"
	}
	return nil
}

func stringList(v Value) ([]Value, error) {
	if v.Kind == String {
		return []Value{v}, nil // xl accepts a single spec too
	}
	if v.Kind != List {
		return nil, fmt.Errorf("expected a list of quoted specs like [ '...', '...' ]")
	}
	for _, it := range v.Items {
		if it.Kind != String {
			return nil, fmt.Errorf("every item must be a quoted string")
		}
	}
	return v.Items, nil
}

// decodeDisks reads xl-disk-configuration(5) specs: positional
// "[prefix:]target,vdev,access" or key=value form.
func decodeDisks(d *decoder, v Value) error {
	items, err := stringList(v)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, it := range items {
		disk, warn, err := spec.ParseDisk(it.Str)
		if err != nil {
			return &Error{Pos: it.Pos, Msg: "disk: " + err.Error()}
		}
		if warn != "" {
			d.warnings = append(d.warnings, Warning{it.Pos, warn})
		}
		if seen[disk.VDev] {
			return &Error{Pos: it.Pos, Msg: fmt.Sprintf("disk: vdev %q is used twice", disk.VDev)}
		}
		seen[disk.VDev] = true
		d.spec.Disks = append(d.spec.Disks, disk)
	}
	return nil
}
func decodeVifs(d *decoder, v Value) error {
	items, err := stringList(v)
	if err != nil {
		return err
	}
	for _, it := range items {
		vif, err := spec.ParseVif(it.Str)
		if err != nil {
			return &Error{Pos: it.Pos, Msg: "vif: " + err.Error()}
		}
		d.spec.Vifs = append(d.spec.Vifs, vif)
	}
	return nil
}
func Keys() []string {
	var out []string
	for k, r := range keys {
		out = append(out, k+"\t"+r.doc)
	}
	sort.Strings(out)
	return out
}

// settable are the keys `--set key=value` may change on an existing spec
// (a clone's): its resources and actions, not what it is made of (its
// name, disks, vifs and boot files have their own flags or follow it).
var settable = map[string]bool{
	"memory": true, "maxmem": true, "vcpus": true, "maxvcpus": true, "cpu_weight": true, "cap": true,
	"cpus": true, "on_poweroff": true, "on_reboot": true, "on_crash": true, "on_watchdog": true,
	"hotplug_slots": true, "localtime": true, "rtc_timeoffset": true, "uuid": true, "accel": true,
}

// ApplySettings sets key=value pairs (xl.cfg keys and values; a bare
// word is taken as a string) on dst, with the same rules as a domain
// file, then normalizes it. dst is unchanged on error.
func ApplySettings(dst *api.DomainSpec, settings []string) error {
	d := &decoder{spec: *dst}
	for _, kv := range settings {
		k, v, ok := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return fmt.Errorf("--set %q: want KEY=VALUE, as in a domain file (memory=512)", kv)
		}
		if !settable[k] {
			var keys []string
			for s := range settable {
				keys = append(keys, s)
			}
			sort.Strings(keys)
			return fmt.Errorf("--set %s: not a setting a clone can change here (these can: %s)", k, strings.Join(keys, ", "))
		}
		if _, err := strconv.ParseInt(v, 0, 64); err != nil && !strings.HasPrefix(v, "\"") && !strings.HasPrefix(v, "'") && !strings.HasPrefix(v, "[") {
			v = strconv.Quote(v)
		}
		sets, err := Parse("--set", []byte(k+" = "+v+"\n"))
		if err != nil {
			return err
		}
		for _, s := range sets {
			if err := keys[s.Key].apply(d, s.Value); err != nil {
				return fmt.Errorf("--set %s: %v", s.Key, err)
			}
		}
	}
	out := d.spec
	// memory without maxmem (vcpus without maxvcpus) moves both when they
	// were equal: what `memory = N` means in a new file.
	given := strings.Join(settings, "\n")
	if dst.MaxMemMiB == dst.MemoryMiB && !strings.Contains(given, "maxmem") {
		out.MaxMemMiB = out.MemoryMiB
	}
	if dst.MaxVCPUs == dst.VCPUs && !strings.Contains(given, "maxvcpus") {
		out.MaxVCPUs = out.VCPUs
	}
	if err := spec.Normalize(&out); err != nil {
		return err
	}
	*dst = out
	return nil
}
