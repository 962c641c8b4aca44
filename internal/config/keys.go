package config

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/names"
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
}

type keyRule struct {
	doc   string
	apply func(d *decoder, v Value) error
}

// keys is the table of understood settings. Growing xl.cfg coverage means
// adding rows here.
var keys = map[string]keyRule{
	"name":        {"domain name", func(d *decoder, v Value) error { return str(v, &d.spec.Name, ValidName) }},
	"uuid":        {"domain UUID", func(d *decoder, v Value) error { return str(v, &d.spec.UUID, validUUID) }},
	"type":        {"pv, pvh or hvm", func(d *decoder, v Value) error { return str(v, &d.spec.Type, oneOf("pv", "pvh", "hvm")) }},
	"builder":     {"legacy name for type (generic = pv)", decodeBuilder},
	"memory":      {"guest RAM in MiB", func(d *decoder, v Value) error { return num(v, &d.spec.MemoryMiB, 16, 1<<22) }},
	"maxmem":      {"maximum RAM in MiB", func(d *decoder, v Value) error { return num(v, &d.spec.MaxMemMiB, 16, 1<<22) }},
	"vcpus":       {"virtual CPUs at boot", func(d *decoder, v Value) error { return num(v, &d.spec.VCPUs, 1, 255) }},
	"maxvcpus":    {"maximum virtual CPUs", func(d *decoder, v Value) error { return num(v, &d.spec.MaxVCPUs, 1, 255) }},
	"kernel":      {"kernel for direct boot", func(d *decoder, v Value) error { return str(v, &d.spec.Kernel, absPath) }},
	"ramdisk":     {"initial ramdisk", func(d *decoder, v Value) error { return str(v, &d.spec.Ramdisk, absPath) }},
	"cmdline":     {"kernel command line", func(d *decoder, v Value) error { d.hasCmd = true; return str(v, &d.cmdline, safeText) }},
	"extra":       {"appended to the command line", func(d *decoder, v Value) error { return str(v, &d.extra, safeText) }},
	"root":        {"root= for the command line", func(d *decoder, v Value) error { return str(v, &d.root, safeText) }},
	"on_poweroff": {"action on power off", func(d *decoder, v Value) error { return str(v, &d.spec.OnPoweroff, validAction) }},
	"on_reboot":   {"action on reboot", func(d *decoder, v Value) error { return str(v, &d.spec.OnReboot, validAction) }},
	"on_crash":    {"action on crash", func(d *decoder, v Value) error { return str(v, &d.spec.OnCrash, validAction) }},
	"accel":       {"ringfence: force kvm or tcg", func(d *decoder, v Value) error { return str(v, &d.spec.Accel, oneOf("kvm", "tcg")) }},
	"on_watchdog": {"action when the watchdog fires", func(d *decoder, v Value) error { return str(v, &d.spec.OnWatchdog, validAction) }},
	"on_soft_reset": {"action on soft reset (kexec); ringfence restarts", func(d *decoder, v Value) error {
		var a string
		return str(v, &a, validAction)
	}},
	"cpus":          {"hard CPU affinity (CPULIST)", decodeCPUs},
	"hotplug_slots": {"PCIe slots for disks/NICs attached while running, 0..8 (Ringfence)", func(d *decoder, v Value) error { return num(v, &d.spec.HotplugSlots, 0, 8) }},
	"cpu_weight":    {"credit scheduler weight 1..65535", func(d *decoder, v Value) error { return num(v, &d.spec.CPUWeight, 1, 65535) }},
	"cap":           {"CPU cap in percent of one host CPU (0 = none)", func(d *decoder, v Value) error { return num(v, &d.spec.Cap, 0, 25500) }},
	"bootloader":    {"pygrub: boot the disk's own bootloader", func(d *decoder, v Value) error { return str(v, &d.spec.Bootloader, validBootloader) }},
	"boot":          {"firmware boot order: c disk, d cdrom, n network", func(d *decoder, v Value) error { return str(v, &d.spec.Boot, validBoot) }},
	"localtime": {"RTC in host local time (1) or UTC (0)", func(d *decoder, v Value) error {
		var n int
		err := num(v, &n, 0, 1)
		d.spec.Localtime = n == 1
		return err
	}},
	"rtc_timeoffset": {"RTC offset from UTC in seconds", func(d *decoder, v Value) error { return num(v, &d.spec.RTCOffsetSec, -1<<31, 1<<31-1) }},
	"disk":           {"list of disk specs", decodeDisks},
	"persistent": {"Ringfence: 1 = create also defines it (kept across stops and host reboots)", func(d *decoder, v Value) error {
		var n int
		err := num(v, &n, 0, 1)
		d.spec.Persistent = n == 1
		return err
	}},
	"vif": {"list of vif specs", decodeVifs},
}

// ignored are keys a hosting admin uses that mean nothing under Ringfence
// (yet): accepted with a warning that says why.
var ignored = map[string]string{
	"serial":     "the first serial port is always ringfence's console (`ringfence console`)",
	"vnc":        "graphics are not served yet (a later web console will); the serial console is there",
	"vnclisten":  "graphics are not served yet",
	"vncdisplay": "graphics are not served yet",
	"vncunused":  "graphics are not served yet",
	"vncpasswd":  "graphics are not served yet",
	"vncconsole": "graphics are not served yet",
	"sdl":        "no local display on a server",
	"keymap":     "graphics are not served yet",
	"vfb":        "graphics are not served yet",
	"usb":        "no USB controller in ringfence's device model",
	"usbdevice":  "no USB controller in ringfence's device model",
	"pci":        "PCI passthrough is not supported yet",
	"cpus_soft":  "only hard affinity (cpus=) is used",
	"cpu_cap":    "this is xm's spelling, which xl ignores too: write cap = N",
	"acpi":       "ACPI is always on (the power button is how shutdown works)",
	"apic":       "always on", "pae": "always on", "hap": "hardware paging is KVM's default",
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
// applied (xl's, see Normalize).
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
		d.spec.Disks[i].Guest = guestDisk(i)
	}
	d.spec.Cmdline = d.mapCmdline(d.cmdline)
	if n := len(d.spec.Cmdline); n > MaxCmdline {
		return api.DomainSpec{}, d.warnings, &Error{Pos: d.cmdPos, Msg: fmt.Sprintf("the kernel command line (root=, extra=, cmdline=) is %d bytes, over the %d an x86 kernel keeps with the console= Ringfence adds: the guest would cut it off silently; shorten it", n, MaxCmdline)}
	}
	if err := Normalize(&d.spec); err != nil {
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

// Normalize applies xl's defaults and checks every field and cross-field
// rule. The daemon runs it on every spec it receives, whether from a
// file, the JSON API, a restore or a migrating peer: none may carry what
// the file parser would refuse.
func Normalize(s *api.DomainSpec) error {
	if err := ValidName(s.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if err := checkFields(s); err != nil {
		return err
	}
	if s.Type == "" {
		s.Type = "pv"
		if s.Kernel == "" && s.Bootloader == "" {
			s.Type = "hvm"
		}
	}
	if s.MemoryMiB == 0 {
		s.MemoryMiB = s.MaxMemMiB
	}
	if s.MemoryMiB == 0 {
		s.MemoryMiB = 32 // libxl's default
	}
	if s.MaxMemMiB == 0 {
		s.MaxMemMiB = s.MemoryMiB
	}
	if s.MaxMemMiB < s.MemoryMiB {
		return fmt.Errorf("maxmem (%d) is below memory (%d): raise maxmem or lower memory", s.MaxMemMiB, s.MemoryMiB)
	}
	if s.VCPUs == 0 {
		s.VCPUs = 1
	}
	if s.MaxVCPUs == 0 {
		s.MaxVCPUs = s.VCPUs
	}
	if s.MaxVCPUs < s.VCPUs {
		return fmt.Errorf("maxvcpus (%d) is below vcpus (%d)", s.MaxVCPUs, s.VCPUs)
	}
	for _, a := range []*string{&s.OnPoweroff, &s.OnReboot, &s.OnCrash} {
		if err := validAction(*a); *a != "" && err != nil {
			return err
		}
	}
	if s.OnPoweroff == "" {
		s.OnPoweroff = api.ActionDestroy
	}
	if s.OnReboot == "" {
		s.OnReboot = api.ActionRestart
	}
	if s.OnCrash == "" {
		s.OnCrash = api.ActionDestroy
	}
	if s.CPUWeight == 0 {
		s.CPUWeight = 256
	}
	if s.OnWatchdog == "" {
		s.OnWatchdog = api.ActionDestroy
	}
	if s.Type != "hvm" && s.Kernel == "" && s.Bootloader == "" {
		return fmt.Errorf("type %q needs kernel = \"/path/to/vmlinuz\" or bootloader = \"pygrub\" (or use type = \"hvm\" to boot the first disk)", s.Type)
	}
	if s.Kernel == "" && len(s.Disks) == 0 {
		return fmt.Errorf("nothing to boot: set kernel = ... or give a disk")
	}
	for _, p := range []string{s.Kernel, s.Ramdisk} {
		if p != "" {
			if err := absPath(p); err != nil {
				return err
			}
		}
	}
	if err := safeText(s.Cmdline); err != nil {
		return fmt.Errorf("cmdline: %w", err)
	}
	// x86's COMMAND_LINE_SIZE is 2048 bytes with its NUL; Ringfence may
	// append " console=ttyS0" (14 bytes). Longer, the guest cuts it off
	// silently, console= with it.
	if n := len(s.Cmdline); n > MaxCmdline {
		return fmt.Errorf("cmdline: %d bytes, over the %d an x86 kernel keeps (2047, less room for the console= Ringfence adds): shorten root=/extra=/cmdline", n, MaxCmdline)
	}
	for i := range s.Disks {
		dk := &s.Disks[i]
		if err := absPath(dk.Target); err != nil && !(dk.CDROM && dk.Target == "") {
			return fmt.Errorf("disk %d: %w", i, err)
		}
		if dk.Format == "" {
			dk.Format = "raw"
		}
		if dk.Access == "" {
			dk.Access = "rw"
		}
		if err := oneOf("raw", "qcow2", "qcow", "vhd", "qed")(dk.Format); err != nil {
			return fmt.Errorf("disk %d format: %w", i, err)
		}
		if err := oneOf("rw", "ro")(dk.Access); err != nil {
			return fmt.Errorf("disk %d access: %w", i, err)
		}
		dk.Guest = guestDisk(i)
	}
	if len(s.Disks) > 20 {
		return fmt.Errorf("at most 20 disks")
	}
	macs := map[string]int{}
	for i := range s.Vifs {
		v := &s.Vifs[i]
		if v.MAC == "" {
			v.MAC = GenerateMAC(s.Name, i)
		}
		if err := validMAC(v.MAC); err != nil {
			return fmt.Errorf("vif %d: %w", i, err)
		}
		v.MAC = strings.ToLower(v.MAC)
		if j, dup := macs[v.MAC]; dup {
			return fmt.Errorf("vif %d: mac %s is vif %d's too: two NICs with one MAC confuse the bridge and the guest; drop mac= from one (a stable one is generated)", i, v.MAC, j)
		}
		macs[v.MAC] = i
		if v.Model == "" {
			v.Model = "virtio"
		}
		if err := oneOf("virtio", "e1000", "rtl8139")(v.Model); err != nil {
			return fmt.Errorf("vif %d model: %w", i, err)
		}
		if v.Bridge != "" && !ifNameRE.MatchString(v.Bridge) {
			return fmt.Errorf("vif %d: bridge %q is not a valid interface name", i, v.Bridge)
		}
	}
	return nil
}

// field checks one JSON field against the same rule as its xl.cfg key.
type fieldRule struct {
	name string
	err  error
}

// rng says whether v is 0 (the default) or within [lo, hi].
func rng(name string, v, lo, hi int64) fieldRule {
	if v != 0 && (v < lo || v > hi) {
		return fieldRule{name, fmt.Errorf("%d is out of range: use %d..%d (0 for the default)", v, lo, hi)}
	}
	return fieldRule{}
}

func strRule(name, v string, check func(string) error) fieldRule {
	if v == "" {
		return fieldRule{}
	}
	if err := check(v); err != nil {
		return fieldRule{name, err}
	}
	return fieldRule{}
}

// checkFields applies each key's rule to a spec that did not come from a
// domain file (the JSON API, a restore or migration header). Errors name
// the JSON field.
func checkFields(s *api.DomainSpec) error {
	rules := []fieldRule{
		strRule("uuid", s.UUID, validUUID),
		strRule("type", s.Type, oneOf("pv", "pvh", "hvm")),
		rng("memory_mib", int64(s.MemoryMiB), 16, 1<<22),
		rng("maxmem_mib", int64(s.MaxMemMiB), 16, 1<<22),
		rng("vcpus", int64(s.VCPUs), 1, 255),
		rng("maxvcpus", int64(s.MaxVCPUs), 1, 255),
		rng("cpu_weight", int64(s.CPUWeight), 1, 65535),
		rng("cap", int64(s.Cap), 0, 25500),
		rng("hotplug_slots", int64(s.HotplugSlots), 0, 8),
		rng("rtc_timeoffset", int64(s.RTCOffsetSec), -1<<31, 1<<31-1),
		strRule("accel", s.Accel, oneOf("kvm", "tcg")),
		strRule("on_poweroff", s.OnPoweroff, validAction),
		strRule("on_reboot", s.OnReboot, validAction),
		strRule("on_crash", s.OnCrash, validAction),
		strRule("on_watchdog", s.OnWatchdog, validAction),
		strRule("bootloader", s.Bootloader, validBootloader),
		strRule("boot", s.Boot, validBoot),
	}
	// cpus= is checked against the host's CPUs by the daemon (ParseCPUList).
	for i, d := range s.Disks {
		p := fmt.Sprintf("disks[%d].", i)
		rules = append(rules,
			strRule(p+"vdev", d.VDev, func(v string) error {
				if !vdevRE.MatchString(v) {
					return fmt.Errorf("%q is not a disk name like xvda, hdc or vdb", v)
				}
				return nil
			}),
			rng(p+"iops", int64(d.IOPS), 1, 1<<40),
			rng(p+"bps", d.BPS, 1, 1<<50),
			strRule(p+"port", d.Port, validPort),
		)
		if d.VDev == "" {
			rules = append(rules, fieldRule{p + "vdev", fmt.Errorf("is missing: every disk needs its name in the domain, like xvda")})
		}
	}
	for i := range s.Vifs {
		v := &s.Vifs[i]
		p := fmt.Sprintf("vifs[%d].", i)
		if v.Rate != "" && v.RateBytes == 0 && v.RateIntervalUS == 0 {
			// rate alone (what a client writes): its meaning filled in.
			v.RateBytes, v.RateIntervalUS, _ = ParseRate(v.Rate)
		}
		rules = append(rules,
			strRule(p+"vifname", v.VifName, func(x string) error {
				if !ifNameRE.MatchString(x) {
					return fmt.Errorf("%q is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)", x)
				}
				return nil
			}),
			strRule(p+"type", v.Type, oneOf("ioemu", "vif")),
			strRule(p+"port", v.Port, validPort),
			rng(p+"rate_bytes", v.RateBytes, 1, 1<<50),
			rng(p+"rate_interval_us", v.RateIntervalUS, 1, 1<<40),
		)
		for _, ip := range v.IP {
			if a, err := netip.ParseAddr(ip); err != nil || a.Zone() != "" {
				rules = append(rules, fieldRule{p + "ip", fmt.Errorf("%q is not an IPv4 or IPv6 address", ip)})
			}
		}
		if v.Rate != "" {
			b, us, err := ParseRate(v.Rate)
			if err != nil {
				rules = append(rules, fieldRule{p + "rate", err})
			} else if b != v.RateBytes || us != v.RateIntervalUS {
				rules = append(rules, fieldRule{p + "rate", fmt.Errorf("%q does not match rate_bytes/rate_interval_us (%d/%d): send rate alone", v.Rate, v.RateBytes, v.RateIntervalUS)})
			}
		} else if v.RateBytes != 0 || v.RateIntervalUS != 0 {
			rules = append(rules, fieldRule{p + "rate", fmt.Errorf("rate_bytes/rate_interval_us need rate (xl's rate=, e.g. \"10Mb/s\")")})
		}
	}
	for _, r := range rules {
		if r.err != nil {
			return fmt.Errorf("%s: %w", r.name, r.err)
		}
	}
	return nil
}

var portRE = regexp.MustCompile(`^hp[0-7]$`)

// validPort is a hot-plug slot name (engine.PortName: hp0..hp7).
func validPort(s string) error {
	if !portRE.MatchString(s) {
		return fmt.Errorf("%q is not a hot-plug slot (hp0..hp7)", s)
	}
	return nil
}

// MaxCmdline is the longest kernel command line accepted.
const MaxCmdline = 2047 - len(" console=ttyS0")

// guestDisk is the virtio name of the i-th disk: disks map to vda, vdb...
// in the order the domain file lists them.
func guestDisk(i int) string { return "vd" + string(rune('a'+i)) }

// GenerateMAC derives a stable MAC in Xen's OUI 00:16:3e from the domain
// name and vif index, so a domain keeps its MAC across restarts and hosts.
func GenerateMAC(name string, idx int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", name, idx)))
	return fmt.Sprintf("00:16:3e:%02x:%02x:%02x", h[0]&0x7f, h[1], h[2])
}

var (
	uuidRE   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	macRE    = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)
	ifNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
)

// ValidName is the domain name rule (internal/names).
func ValidName(s string) error { return names.Check("domain", s) }

func validUUID(s string) error {
	if !uuidRE.MatchString(s) {
		return fmt.Errorf("%q is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", s)
	}
	return nil
}

func validMAC(s string) error {
	if !macRE.MatchString(s) {
		return fmt.Errorf("mac %q is malformed: write six hex pairs like 00:16:3e:12:34:56 (or leave mac= out to get a stable generated one)", s)
	}
	var first int
	fmt.Sscanf(s[:2], "%x", &first)
	if first&1 == 1 {
		return fmt.Errorf("mac %q is a multicast address: the first byte must be even", s)
	}
	return nil
}

func absPath(s string) error {
	if !strings.HasPrefix(s, "/") {
		return fmt.Errorf("path %q must be absolute", s)
	}
	if strings.ContainsAny(s, "\x00\n") {
		return fmt.Errorf("path %q contains a control character", s)
	}
	return nil
}

func safeText(s string) error {
	for _, r := range s {
		if r < 0x20 && r != '\t' {
			return fmt.Errorf("contains a control character")
		}
	}
	return nil
}

func validAction(s string) error {
	return oneOf(api.ActionDestroy, api.ActionRestart, api.ActionPreserve, api.ActionRenameRestart,
		api.ActionCoredumpDestroy, api.ActionCoredumpRestart, api.ActionSoftReset)(s)
}

func validBootloader(s string) error {
	if filepath.Base(s) != "pygrub" && s != "pvgrub" {
		return fmt.Errorf("%q: only pygrub is understood (the firmware then boots the disk's own bootloader); or set kernel= for direct boot", s)
	}
	return nil
}

var bootRE = regexp.MustCompile(`^[acdn]{1,4}$`)

func validBoot(s string) error {
	if !bootRE.MatchString(s) {
		return fmt.Errorf("%q: the boot order is letters c (disk), d (cdrom), n (network), e.g. \"cd\"", s)
	}
	return nil
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

func oneOf(allowed ...string) func(string) error {
	return func(s string) error {
		for _, a := range allowed {
			if s == a {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", s, strings.Join(allowed, ", "))
	}
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

func num(v Value, dst *int, lo, hi int64) error {
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
	if n < lo || n > hi {
		return fmt.Errorf("%d is out of range %d..%d", n, lo, hi)
	}
	*dst = int(n)
	return nil
}

func decodeBuilder(d *decoder, v Value) error {
	var b string
	if err := str(v, &b, oneOf("generic", "linux", "hvm")); err != nil {
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
		disk, warn, err := ParseDisk(it.Str)
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
func ParseDisk(s string) (api.Disk, string, error) {
	var disk api.Disk
	var warn string
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
		switch k {
		case "vdev":
			disk.VDev = val
		case "access":
			disk.Access = val
		case "format":
			disk.Format = val
		case "devtype":
			if val != "cdrom" && val != "disk" {
				return disk, "", fmt.Errorf("devtype %q: use cdrom or disk", val)
			}
			disk.CDROM = val == "cdrom"
		case "iops":
			n, err := strconv.Atoi(val)
			if err != nil || n <= 0 {
				return disk, "", fmt.Errorf("iops=%s: a whole number of I/O operations per second, e.g. iops=500", val)
			}
			disk.IOPS = n
		case "bps":
			n, err := ParseSize(val)
			if err != nil {
				return disk, "", fmt.Errorf("bps=%s: bytes per second with an optional k, m or g suffix, e.g. bps=50m", val)
			}
			disk.BPS = n
		case "script":
			return disk, "", fmt.Errorf("script=%s: block hotplug scripts are not supported on KVM; give the block device itself as the target", val)
		case "backendtype", "backend", "specification":
		default:
			return disk, "", fmt.Errorf("unknown key %q in %q (keys: target, vdev, access, format, devtype)", k, s)
		}
	}
	legacy := false
	if len(positional) > 0 {
		t := positional[0]
		for {
			m := prefixRE.FindStringSubmatch(t)
			if m == nil {
				break
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
					return disk, "", fmt.Errorf("%s: targets need Xen's block-%s hotplug script, which KVM does not run: attach the device on the host and give its /dev path", m[1], m[1])
				}
				return disk, "", fmt.Errorf("unknown prefix %q in %q (known: phy:, file:, tap:aio:, raw:, qcow2:, vhd:)", m[0], s)
			}
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
				return disk, "", fmt.Errorf("%q has %d fields; the form is PREFIX:TARGET,VDEV,ACCESS (xm's 4th backend-domain field is not supported)", s, len(positional))
			}
			return disk, "", fmt.Errorf("%q has %d positional fields; the form is TARGET,FORMAT,VDEV,ACCESS", s, len(positional))
		}
		for i, v := range positional {
			if v != "" {
				*fields[i] = v
			}
		}
		if !legacy && len(positional) > 1 && !diskFormats[disk.Format] && vdevRE.MatchString(strings.TrimSuffix(positional[1], ":cdrom")) {
			return disk, "", fmt.Errorf("%q: without a prefix the fields are TARGET,FORMAT,VDEV,ACCESS, so %q was read as a format; write 'phy:%s' (prefix form: TARGET,VDEV,ACCESS) or '%s,raw,%s'",
				s, positional[1], s, positional[0], strings.Join(positional[1:], ","))
		}
	}
	disk.VDev = strings.TrimPrefix(disk.VDev, "ioemu:") // xend's "emulated" marker
	for _, suffix := range []string{":cdrom", ":disk"} {
		if vd, ok := strings.CutSuffix(disk.VDev, suffix); ok {
			disk.VDev = vd
			disk.CDROM = disk.CDROM || suffix == ":cdrom"
		}
	}
	if disk.Format != "" && !diskFormats[disk.Format] {
		return disk, "", fmt.Errorf("format %q: use raw, qcow2, qcow, vhd or qed", disk.Format)
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
		return disk, "", fmt.Errorf("access %q: use r (read-only) or w (read-write)", disk.Access)
	}
	if disk.CDROM {
		disk.Access = "ro"
	}
	if !vdevRE.MatchString(disk.VDev) {
		hint := ""
		if vdevRE.MatchString(strings.TrimPrefix(disk.Target, "/dev/")) {
			hint = " (after a prefix the fields are TARGET,VDEV,ACCESS: the vdev goes second, the path first)"
		}
		return disk, "", fmt.Errorf("vdev %q in %q is not a disk name like xvda, hda or sdb%s", disk.VDev, s, hint)
	}
	if disk.Target == "" && !disk.CDROM {
		return disk, "", fmt.Errorf("no target path in %q", s)
	}
	if disk.Target != "" {
		if err := absPath(disk.Target); err != nil {
			return disk, "", err
		}
	}
	return disk, warn, nil
}

func decodeVifs(d *decoder, v Value) error {
	items, err := stringList(v)
	if err != nil {
		return err
	}
	for _, it := range items {
		vif, err := ParseVif(it.Str)
		if err != nil {
			return &Error{Pos: it.Pos, Msg: "vif: " + err.Error()}
		}
		d.spec.Vifs = append(d.spec.Vifs, vif)
	}
	return nil
}

// ParseVif parses one xl-network-configuration(5) spec.
func ParseVif(s string) (api.Vif, error) {
	var vif api.Vif
	if strings.TrimSpace(s) == "" {
		return vif, nil // '' is a vif with all defaults
	}
	for _, f := range strings.Split(s, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok {
			return vif, fmt.Errorf("%q is not key=value", f)
		}
		switch k {
		case "mac":
			if err := validMAC(val); err != nil {
				return vif, err
			}
			vif.MAC = strings.ToLower(val)
		case "bridge":
			if !ifNameRE.MatchString(val) {
				return vif, fmt.Errorf("bridge %q is not a valid interface name", val)
			}
			vif.Bridge = val
		case "ip":
			for _, ip := range strings.Fields(val) {
				a, err := netip.ParseAddr(ip)
				if err != nil || a.Zone() != "" {
					return vif, fmt.Errorf("ip %q is not an IPv4 or IPv6 address (several go space-separated: ip=10.0.0.5 2001:db8::5)", ip)
				}
				vif.IP = append(vif.IP, a.String())
			}
		case "model":
			vif.Model = val
		case "rate":
			b, us, err := ParseRate(val)
			if err != nil {
				return vif, err
			}
			vif.Rate, vif.RateBytes, vif.RateIntervalUS = val, b, us
		case "vifname":
			if !ifNameRE.MatchString(val) {
				return vif, fmt.Errorf("vifname %q is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)", val)
			}
			vif.VifName = val
		case "type":
			if val != "ioemu" && val != "vif" {
				return vif, fmt.Errorf("type %q: use ioemu or vif", val)
			}
			vif.Type = val
		case "script", "backend", "gatewaydev", "netdev", "accel", "devid", "mtu", "trusted", "untrusted":
			// Xen hotplug details with no meaning here; accepted so Xen files load.
		default:
			return vif, fmt.Errorf("unknown key %q", k)
		}
	}
	return vif, nil
}

// ParseSize reads 50m, 1g, 10G, 2T, 4096 (bytes; k/m/g/t are powers of
// 1024, either case), as xl and qemu-img write sizes.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	switch strings.ToLower(s[len(s)-min(1, len(s)):]) {
	case "k":
		mult = 1 << 10
	case "m":
		mult = 1 << 20
	case "g":
		mult = 1 << 30
	case "t":
		mult = 1 << 40
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size")
	}
	return n * mult, nil
}

var rateRE = regexp.MustCompile(`^([0-9]+)(GB|MB|KB|B|Gb|Mb|Kb|b)/s(@([0-9]+)(s|ms|us))?$`)

// ParseRate reads xl's rate= (NUM{GB,MB,KB,B,Gb,Mb,Kb,b}/s[@INTERVAL{s,ms,us}])
// into bytes per interval, the interval defaulting to 50 ms as in Xen.
func ParseRate(s string) (int64, int64, error) {
	m := rateRE.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, fmt.Errorf("rate %q: write a number, a unit (GB MB KB B for bytes, Gb Mb Kb b for bits) and /s, optionally @interval: 10Mb/s, 1MB/s@20ms", s)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	unit := map[string]int64{"GB": 1e9, "MB": 1e6, "KB": 1e3, "B": 1, "Gb": 1e9 / 8, "Mb": 1e6 / 8, "Kb": 1e3 / 8}[m[2]]
	perSec := n * unit
	if m[2] == "b" {
		perSec = n / 8
	}
	intervalUS := int64(50000)
	if m[4] != "" {
		iv, _ := strconv.ParseInt(m[4], 10, 64)
		intervalUS = iv * map[string]int64{"s": 1e6, "ms": 1e3, "us": 1}[m[5]]
	}
	if perSec <= 0 || intervalUS <= 0 || intervalUS > 1e6 {
		return 0, 0, fmt.Errorf("rate %q: the rate must be positive and the interval at most 1s", s)
	}
	return perSec * intervalUS / 1e6, intervalUS, nil
}

// Keys lists the understood keys with their docs, sorted.
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
// word is taken as a string) on spec, with the same rules as a domain
// file, then normalizes it. spec is unchanged on error.
func ApplySettings(spec *api.DomainSpec, settings []string) error {
	d := &decoder{spec: *spec}
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
	if spec.MaxMemMiB == spec.MemoryMiB && !strings.Contains(given, "maxmem") {
		out.MaxMemMiB = out.MemoryMiB
	}
	if spec.MaxVCPUs == spec.VCPUs && !strings.Contains(given, "maxvcpus") {
		out.MaxVCPUs = out.VCPUs
	}
	if err := Normalize(&out); err != nil {
		return err
	}
	*spec = out
	return nil
}
