package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/spec"
)

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
	"memory":      {"guest RAM in MiB", func(d *decoder, v Value) error { return d.num(v, &d.spec.MemoryMiB, spec.MemoryRange) }},
	"maxmem":      {"maximum RAM in MiB", func(d *decoder, v Value) error { return d.num(v, &d.spec.MaxMemMiB, spec.MemoryRange) }},
	"vcpus":       {"virtual CPUs at boot", func(d *decoder, v Value) error { return d.num(v, &d.spec.VCPUs, spec.VCPURange) }},
	"maxvcpus":    {"maximum virtual CPUs", func(d *decoder, v Value) error { return d.num(v, &d.spec.MaxVCPUs, spec.VCPURange) }},
	"kernel":      {"kernel for direct boot", decodeKernel},
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
	"hotplug_slots": {"PCIe slots for disks/NICs attached while running, 0..8 (Ringfence)", func(d *decoder, v Value) error { return d.num(v, &d.spec.HotplugSlots, spec.HotplugSlotsRange) }},
	"cpu_weight":    {"credit scheduler weight 1..65535", func(d *decoder, v Value) error { return d.num(v, &d.spec.CPUWeight, spec.CPUWeightRange) }},
	"cap":           {"CPU cap in percent of one host CPU (0 = none)", func(d *decoder, v Value) error { return d.num(v, &d.spec.Cap, spec.CapRange) }},
	"bootloader":    {"pygrub: boot the disk's own bootloader", func(d *decoder, v Value) error { return str(v, &d.spec.Bootloader, spec.ValidBootloader) }},
	"boot":          {"firmware boot order: c disk, d cdrom, n network", func(d *decoder, v Value) error { return str(v, &d.spec.Boot, spec.ValidBoot) }},
	"localtime": {"RTC in host local time (1) or UTC (0)", func(d *decoder, v Value) error {
		var n int
		err := d.num(v, &n, switchRange)
		d.spec.Localtime = n == 1
		return err
	}},
	"rtc_timeoffset": {"RTC offset from UTC in seconds", func(d *decoder, v Value) error { return d.num(v, &d.spec.RTCOffsetSec, spec.RTCOffsetRange) }},
	"disk":           {"list of disk specs", decodeDisks},
	"persistent": {"Ringfence: 1 = create also defines it (kept across stops and host reboots)", func(d *decoder, v Value) error {
		var n int
		err := d.num(v, &n, switchRange)
		d.spec.Persistent = n == 1
		return err
	}},
	"ha": {"Ringfence: 1 = in a cluster, restart it on a surviving host when its host fails (disks on cluster pools)", func(d *decoder, v Value) error {
		var n int
		err := d.num(v, &n, switchRange)
		d.spec.HA = n == 1
		return err
	}},
	"vif": {"list of vif specs", decodeVifs},
	"transfer_quota": {"Ringfence: bytes its vifs may move in a month (100G, 500M; 0 = none)", func(d *decoder, v Value) error {
		if v.Kind == Number && v.Num == 0 {
			d.spec.TransferQuota = 0
			return nil
		}
		s := v.Str
		if v.Kind == Number {
			s = strconv.FormatInt(v.Num, 10)
		}
		n, err := spec.ParseSize(s)
		if err != nil || v.Kind == List {
			return fmt.Errorf("expected a size like \"100G\" or \"500M\" (k/m/g/t: powers of 1024), or 0 for none")
		}
		d.spec.TransferQuota = n
		return nil
	}},
	"transfer_action": {"Ringfence: what a crossed transfer_quota does: notify, pause, throttle:RATE (throttle:10Mbit)", func(d *decoder, v Value) error {
		return str(v, &d.spec.TransferAction, spec.ValidTransferAction)
	}},

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

	"device_model":        "the host's QEMU is always the device model; this path is not used",
	"parallel":            "no parallel port in ringfence's device model",
	"cdrom":               "xm's CD key, which xl ignores too: add the CD to disk = [ ..., 'PATH,hdc:cdrom,r' ]",
	"hostname":            "xm-only; set the hostname inside the guest",
	"seclabel":            "Xen's security (XSM/FLASK) label: no meaning under KVM",
	"init_seclabel":       "Xen's security (XSM/FLASK) label: no meaning under KVM",
	"max_grant_frames":    "Xen grant tables: no meaning under KVM",
	"max_maptrack_frames": "Xen grant tables: no meaning under KVM",
	"max_event_channels":  "Xen event channels: no meaning under KVM",
	"device_tree":         "Arm device-tree passthrough is not supported",
	"dtdev":               "Arm device passthrough is not supported",
	"irqs":                "IRQ passthrough is not supported",
	"iomem":               "I/O memory passthrough is not supported",
	"ioports":             "I/O port passthrough is not supported",
	"gfx_passthru":        "PCI passthrough is not supported yet",
	"rdm":                 "PCI passthrough is not supported yet",
	"vnuma":               "virtual NUMA is not offered: the guest sees one node with all its memory",
	"opengl":              "no local display on a server",
	"vgsx":                "a Xen PV device: not offered under KVM",
	"vdispl":              "a Xen PV display: not offered under KVM",
	"vkb":                 "a Xen PV keyboard: not offered under KVM",
	"vsnd":                "a Xen PV sound card: not offered under KVM",
	"vtpm":                "a Xen vTPM: not offered yet",
	"channel":             "Xen PV channels: not offered (the serial console is there)",
	"p9":                  "Xen 9pfs shares: not offered",
	"usbctrl":             "no USB controller in ringfence's device model",
	"usbdev":              "no USB controller in ringfence's device model",
	"pool":                "Xen CPU pools: place the domain with cpus= instead",
	"shadow_memory":       "KVM manages shadow paging",
	"timer_mode":          "KVM manages guest timers",
	"hpet":                "the HPET follows QEMU's machine type",
	"nomigrate":           "every domain may migrate here; keep it on its host by not migrating it",
	"driver_domain":       "no driver domains under KVM: the host serves every device",
	"e820_host":           "the guest gets QEMU's memory map",
	"altp2m":              "Xen alternate p2m: no meaning under KVM",
}

// honoured are values of those keys that say what happens here anyway
// (pae = 1, sdl = 0, an empty pci list): no warning for them.
var honoured = map[string]func(Value) bool{
	"pae": is(1), "acpi": is(1), "apic": is(1), "hap": is(1), "hpet": is(1), "sdl": is(0), "viridian": is(0),
	"nestedhvm": is(0), "usb": is(0), "stdvga": is(0), "xen_platform_pci": is(0), "nographic": is(1),
	"pci": emptyList, "irqs": emptyList, "iomem": emptyList, "dtdev": emptyList,
	"serial": onePty, "parallel": isWord("none"), "device_model_version": isWord("qemu-xen"),
	"tsc_mode": func(v Value) bool { return is(0)(v) || isWord("default")(v) },
}

// misspelt are keys xl does not know that stand for one it does.
var misspelt = map[string]string{
	"initrd": "did you mean ramdisk? this initrd is not loaded", "memmax": "did you mean maxmem?", "mem": "did you mean memory?", "ram": "did you mean memory?",
	"vcpu": "did you mean vcpus?", "disks": "did you mean disk?", "vifs": "did you mean vif?", "network": "did you mean vif?", "append": "did you mean extra?", "cmd_line": "did you mean cmdline?",
	"on_shutdown": "did you mean on_poweroff?", "bridge": "did you mean vif = [ 'bridge=...' ]?", "mac": "did you mean vif = [ 'mac=...' ]?",
}

// is says a number (quoted or not) equals n.
func is(n int64) func(Value) bool {
	return func(v Value) bool {
		if v.Kind == Number {
			return v.Num == n
		}
		got, _, err := spec.ParseInt(v.Str)
		return v.Kind == String && err == nil && got == n
	}
}

func isWord(w string) func(Value) bool {
	return func(v Value) bool { return v.Kind == String && v.Str == w }
}

func emptyList(v Value) bool { return v.Kind == List && len(v.Items) == 0 }

// onePty is serial = 'pty' (or a list of just it): the one serial port
// Ringfence gives every guest, its console.
func onePty(v Value) bool {
	if v.Kind == List && len(v.Items) == 1 {
		v = v.Items[0]
	}
	return v.Kind == String && v.Str == "pty"
}

var cpuListRE = regexp.MustCompile(`^(all|\^?(nodes?:)?[0-9]+(-[0-9]+)?(,\^?(nodes?:)?[0-9]+(-[0-9]+)?)*)$`)

// decodeCPUs reads cpus= as a CPULIST string; a per-vCPU list is joined
// (pinning each vCPU separately is the resources issue). Like xl's
// parser it keeps a string that is not a CPU list (a template's
// placeholder): it says so, and the host refuses it at create.
func decodeCPUs(d *decoder, v Value) error {
	var parts []string
	switch v.Kind {
	case String, Number:
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
		if strings.ContainsAny(p, ";\x00\n") {
			return fmt.Errorf("%q is not a CPU list: use \"all\", \"2\", \"0-3\", \"0-7,^1\"", p)
		}
		if !cpuListRE.MatchString(strings.ReplaceAll(p, " ", "")) {
			d.warn(v.Pos, "cpus", "cpus %q is not a CPU list (a placeholder left in a template?): xl reads it and fails when it pins, and `ringfence create` refuses it; write one like \"all\", \"2\", \"0-3\", \"0-7,^1\"", p)
		}
	}
	d.spec.CPUs = strings.Join(parts, ";")
	return nil
}

// str reads a string setting; a number is taken as its text, as xl does
// (name = 123).
func str(v Value, dst *string, check func(string) error) error {
	if v.Kind == List {
		return fmt.Errorf("expected a quoted string, not a list")
	}
	if err := check(v.Str); err != nil {
		return err
	}
	*dst = v.Str
	return nil
}

// switchRange is the range of a 0/1 switch (localtime, persistent).
var switchRange = spec.Range{Lo: 0, Hi: 1}

// num reads a number setting: unquoted, or quoted in any base xl reads
// ('04', '0x100', "010" = 8, said), within r.
func (d *decoder) num(v Value, dst *int, r spec.Range) error {
	n := v.Num
	switch v.Kind {
	case Number:
	case String:
		got, octal, err := spec.ParseInt(strings.TrimLeft(v.Str, " \t"))
		if err != nil {
			return fmt.Errorf("%q is not a whole number (decimal, 0x hex or 0 octal)", v.Str)
		}
		if octal && got != 0 {
			d.warn(v.Pos, "", "%q: a leading 0 makes it octal in xl (%d); drop the 0 if you meant %s", v.Str, got, strings.TrimLeft(v.Str, " \t0"))
		}
		n = got
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

// decodeKernel reads kernel=. Two relative names are Xen's own boot
// programs, recognised before the rule that a kernel is an absolute path:
// hvmloader (the HVM firmware: the domain boots through firmware) and PV
// GRUB (pv-grub*.gz: the firmware boots the disk's own GRUB instead).
func decodeKernel(d *decoder, v Value) error {
	base := filepath.Base(v.Str)
	switch {
	case v.Kind == String && base == "hvmloader":
		d.warn(v.Pos, "kernel", "kernel = %s is Xen's HVM firmware: ignored, the domain boots through firmware as type hvm", v.Str)
		if d.spec.Type == "" || d.spec.Type == "pv" {
			d.spec.Type = "hvm"
		}
		d.spec.Kernel = ""
		return nil
	case v.Kind == String && (strings.HasPrefix(base, "pv-grub") || strings.HasPrefix(base, "pvgrub")):
		d.pvgrub = v.Str
		d.spec.Kernel = ""
		return nil
	}
	return str(v, &d.spec.Kernel, spec.AbsPath)
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
