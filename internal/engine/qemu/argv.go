package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ringfence/ringfence/internal/engine"
)

// prop is one key=value of a QEMU option; an empty key is a bare value.
type prop struct{ k, v string }

// option is one command-line option: -flag props.
type option struct {
	flag  string
	props []prop
	raw   *string // a value passed verbatim (the kernel command line)
}

// escape doubles commas, QEMU's only escape inside option values, so a
// path or name with a comma cannot inject another property.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func (o option) args() []string {
	if o.raw != nil {
		return []string{o.flag, *o.raw}
	}
	if o.props == nil {
		return []string{o.flag}
	}
	parts := make([]string, 0, len(o.props))
	for _, p := range o.props {
		if p.k == "" {
			parts = append(parts, escape(p.v))
		} else {
			parts = append(parts, p.k+"="+escape(p.v))
		}
	}
	return []string{o.flag, strings.Join(parts, ",")}
}

func opt(flag string, kv ...string) option {
	o := option{flag: flag, props: []prop{}}
	for i := 0; i+1 < len(kv); i += 2 {
		o.props = append(o.props, prop{kv[i], kv[i+1]})
	}
	return o
}

// Paths of the per-domain runtime files inside RunDir.
func qmpPath(run string) string    { return filepath.Join(run, "qmp.sock") }
func serialPath(run string) string { return filepath.Join(run, "serial.sock") }
func agentPath(run string) string  { return filepath.Join(run, "qga.sock") }
func vncPath(run string) string    { return filepath.Join(run, "vnc.sock") }
func pidPath(run string) string    { return filepath.Join(run, "qemu.pid") }
func logPath(run string) string    { return filepath.Join(run, "qemu.log") }

// options builds the typed QEMU configuration of a LaunchSpec. This is the
// one place QEMU's device model is chosen; see docs/device-model.md. The
// groups come in a fixed order: golden tests hold the argv to it.
func options(s engine.LaunchSpec, fds map[string]diskFD) ([]option, error) {
	if s.Accel != "kvm" && s.Accel != "tcg" {
		return nil, fmt.Errorf("accelerator %q: must be kvm or tcg", s.Accel)
	}
	if s.MemoryMiB <= 0 || s.VCPUs <= 0 {
		return nil, fmt.Errorf("memory and vcpus must be positive")
	}
	o, err := machineOpts(s)
	if err != nil {
		return nil, err
	}
	o = append(o, controlOpts(s)...)
	o = append(o, sandboxOpts(s)...)
	o = append(o, bootOpts(s)...)
	o = append(o, displayOpts(s)...)
	o = append(o, hotplugPortOpts(s)...)
	disks, err := diskOpts(s, fds)
	if err != nil {
		return nil, err
	}
	o = append(o, disks...)
	if s.Balloon {
		o = append(o, opt("-device", "", "virtio-balloon-pci", "id", "balloon0"))
	}
	if s.GuestAgent {
		// The guest agent's port: a virtio-serial port the guest's
		// qemu-guest-agent finds by its name, its host end a socket.
		o = append(o, opt("-chardev", "", "socket", "id", "qga0", "path", agentPath(s.RunDir), "server", "on", "wait", "off"),
			opt("-device", "", "virtio-serial-pci", "id", "vser0"),
			opt("-device", "", "virtserialport", "bus", "vser0.0", "chardev", "qga0", "name", "org.qemu.guest_agent.0"))
	}
	nics, err := nicOpts(s)
	if err != nil {
		return nil, err
	}
	return append(o, nics...), nil
}

// machineOpts: the machine, accelerator, CPUs and memory.
func machineOpts(s engine.LaunchSpec) ([]option, error) {
	maxv := s.MaxVCPUs
	if maxv < s.VCPUs {
		maxv = s.VCPUs
	}
	o := []option{
		opt("-name", "guest", s.Name, "debug-threads", "on"),
		opt("-machine", "", "q35"),
		accelOpt(s.Accel, s.MemoryMiB),
		opt("-m", "size", strconv.Itoa(s.MemoryMiB)+"M"),
		opt("-smp", "cpus", strconv.Itoa(s.VCPUs), "maxcpus", strconv.Itoa(maxv)),
	}
	if s.Accel == "kvm" {
		o = append(o, opt("-cpu", "", "host"))
	}
	if s.HugePages != "" {
		if !filepath.IsAbs(s.HugePages) {
			return nil, fmt.Errorf("huge page mount %q must be absolute", s.HugePages)
		}
		o = append(o, opt("-mem-path", "", s.HugePages))
	}
	if s.Prealloc {
		// Guest RAM is allocated at start, inside the domain's cgroup: it
		// exists, or the start fails now rather than later.
		o = append(o, option{flag: "-mem-prealloc"})
	}
	if s.UUID != "" {
		o = append(o, opt("-uuid", "", s.UUID))
	}
	return o, nil
}

// controlOpts: no default devices or display, how the guest's reset and
// panic end QEMU, and the monitor, serial console and pid file.
func controlOpts(s engine.LaunchSpec) []option {
	return []option{
		{flag: "-nodefaults"},
		{flag: "-no-user-config"},
		opt("-display", "", "none"),
		// A guest reset ends the process; the daemon applies on_reboot,
		// which is how Xen treats a reboot (a new domain).
		{flag: "-no-reboot"},
		opt("-action", "panic", "shutdown"),
		// Start stopped so the console is attached before the first byte.
		{flag: "-S"},
		opt("-chardev", "", "socket", "id", "qmp", "path", qmpPath(s.RunDir), "server", "on", "wait", "off"),
		opt("-mon", "chardev", "qmp", "mode", "control"),
		opt("-chardev", "", "socket", "id", "serial0", "path", serialPath(s.RunDir), "server", "on", "wait", "off"),
		opt("-serial", "", "chardev:serial0"),
		opt("-pidfile", "", pidPath(s.RunDir)),
	}
}

// sandboxOpts: the seccomp filter, an incoming migration, and the user
// QEMU drops to.
func sandboxOpts(s engine.LaunchSpec) []option {
	// Least privilege inside QEMU: a seccomp filter (no spawning, no
	// obsolete syscalls, no scheduler/affinity changes from inside) and an
	// unprivileged user. -runas needs setuid/setgid once, and QEMU 7.2's
	// filter denies them even in "children" mode, so with -runas set*id
	// stay allowed: an unprivileged process cannot use them to regain root.
	elevate := "deny"
	if s.RunAs != "" {
		elevate = "allow"
	}
	o := []option{opt("-sandbox", "", "on", "obsolete", "deny", "elevateprivileges", elevate, "spawn", "deny", "resourcecontrol", "deny")}
	if s.Incoming {
		o = append(o, opt("-incoming", "", "defer"))
	}
	if s.RunAs != "" {
		// QEMU opens disks, kernel and taps as root, then drops to this
		// user before the guest runs its first instruction.
		o = append(o, opt("-runas", "", s.RunAs))
	}
	return o
}

// bootOpts: a direct kernel boot or the firmware's boot order, and the
// clock.
func bootOpts(s engine.LaunchSpec) []option {
	var o []option
	if s.Kernel != "" {
		// -kernel and -initrd take their value whole (QEMU does not split
		// them on commas): passed verbatim, not comma-escaped.
		kernel, initrd := s.Kernel, s.Initrd
		o = append(o, option{flag: "-kernel", raw: &kernel})
		if s.Initrd != "" {
			o = append(o, option{flag: "-initrd", raw: &initrd})
		}
		if s.Cmdline != "" {
			// -append takes the whole string as one value: no comma escaping.
			cmd := s.Cmdline
			o = append(o, option{flag: "-append", raw: &cmd})
		}
	} else {
		order := s.Boot
		if order == "" {
			order = "c"
		}
		o = append(o, opt("-boot", "order", order))
	}
	if s.RTCBase != "" {
		o = append(o, opt("-rtc", "base", s.RTCBase))
	}
	return o
}

// displayOpts: with VNC, a standard VGA card and QEMU's VNC server on a
// unix socket in the run dir (created before QEMU drops to its own user,
// so only the daemon, root, connects; no TCP port is ever opened).
// Viewers share the display: one asking for it alone (RFB's shared flag
// 0) does not disconnect the others.
func displayOpts(s engine.LaunchSpec) []option {
	if !s.VNC {
		return nil
	}
	vnc := []string{"", "unix:" + vncPath(s.RunDir), "share", "force-shared"}
	if s.VNCPassword {
		vnc = append(vnc, "password", "on")
	}
	return []option{opt("-device", "", "VGA", "id", "video0"), opt("-vnc", vnc...)}
}

// hotplugPortOpts: spare PCIe root ports: q35's root bus cannot hot-plug,
// a root port can (disks attached while the VM runs).
func hotplugPortOpts(s engine.LaunchSpec) []option {
	var o []option
	for i := 0; i < s.HotplugSlots && i < engine.MaxHotplugSlots; i++ {
		o = append(o, opt("-device", "", "pcie-root-port", "id", engine.PortName(i), "chassis", strconv.Itoa(i+1), "bus", "pcie.0"))
	}
	return o
}

// diskOpts: each disk's fds, drive and device, in the spec's order.
func diskOpts(s engine.LaunchSpec, fds map[string]diskFD) ([]option, error) {
	var o []option
	for i, d := range s.Disks {
		if strings.ContainsAny(d.Path, "\x00\n") || (d.Path != "" && !filepath.IsAbs(d.Path)) {
			return nil, fmt.Errorf("disk %s: path %q must be absolute", d.ID, d.Path)
		}
		id := "drive-" + d.ID
		f, hasFD := fds[d.ID]
		if hasFD {
			for _, n := range f.fds {
				o = append(o, opt("-add-fd", "fd", strconv.Itoa(n), "set", strconv.Itoa(f.set)))
			}
		}
		o = append(o, opt("-drive", driveProps(d, id, f, hasFD)...))
		dev := []string{"", "virtio-blk-pci", "drive", id, "id", d.ID}
		if d.Port != "" {
			dev = append(dev, "bus", d.Port)
		}
		if d.CDROM {
			dev = []string{"", "ide-cd", "drive", id, "id", d.ID}
		}
		if i == 0 && s.Kernel == "" && s.Boot == "" {
			dev = append(dev, "bootindex", "1")
		}
		o = append(o, opt("-device", dev...))
	}
	return o, nil
}

// driveProps are the -drive properties of disk d (node id): its image,
// whether from the fd set f (hasFD) or a path, and its limits.
func driveProps(d engine.Disk, id string, f diskFD, hasFD bool) []string {
	format := d.Format
	if format == "vhd" {
		format = "vpc" // QEMU's name for VHD
	}
	drive := []string{"if", "none", "id", id, "format", format, "cache", "writeback", "aio", "threads", "discard", "unmap"}
	if d.Path == "" {
		// An empty (CD-ROM) drive: no image, so no format or cache mode.
		drive = []string{"if", "none", "id", id}
	}
	if hasFD {
		// QEMU's lock bytes assume each reopen is a new open file
		// description; dups from an fd set share one, and its lock
		// checks fail mid-run (a block job aborts QEMU). The daemon
		// refuses a disk another domain uses instead.
		driver := "file"
		if f.block {
			driver = "host_device"
		}
		drive = append(drive, "file.driver", driver, "file.filename", "/dev/fdset/"+strconv.Itoa(f.set), "file.locking", "off")
	} else if d.Path != "" {
		drive = append(drive, "file", d.Path)
	}
	if d.ReadOnly {
		drive = append(drive, "readonly", "on")
	}
	if d.IOPS > 0 {
		drive = append(drive, "throttling.iops-total", strconv.Itoa(d.IOPS))
	}
	if d.BPS > 0 {
		drive = append(drive, "throttling.bps-total", strconv.FormatInt(d.BPS, 10))
	}
	return drive
}

// nicOpts: each NIC's tap backend and device.
func nicOpts(s engine.LaunchSpec) ([]option, error) {
	var o []option
	for _, n := range s.NICs {
		model := nicModels[n.Model]
		if model == "" {
			return nil, fmt.Errorf("nic %s: unknown model %q", n.ID, n.Model)
		}
		o = append(o,
			opt("-netdev", "", "tap", "id", "net-"+n.ID, "ifname", n.Tap, "script", "no", "downscript", "no"),
			opt("-device", append(append([]string{"", model, "netdev", "net-" + n.ID, "mac", n.MAC, "id", n.ID}, hostMTU(n)...), busOf(n.Port)...)...),
		)
	}
	return o, nil
}

// diskFD is a disk opened by the daemon and handed to QEMU as an fd set:
// QEMU (running unprivileged) never opens disk paths itself, and can still
// reopen the image read-write when it activates it after an incoming
// migration, because the set holds a read-write descriptor.
type diskFD struct {
	set   int
	fds   []int // descriptor numbers in QEMU
	block bool  // a block device (QEMU's host_device driver), not a file
}

// argv returns the full command line, disks by path.
func argv(bin string, s engine.LaunchSpec) ([]string, error) { return argvFDs(bin, s, nil) }

// argvFDs returns the full command line with the disks in fds passed as
// fd sets.
func argvFDs(bin string, s engine.LaunchSpec, fds map[string]diskFD) ([]string, error) {
	opts, err := options(s, fds)
	if err != nil {
		return nil, err
	}
	out := []string{bin}
	for _, o := range opts {
		out = append(out, o.args()...)
	}
	return out, nil
}

// accelOpt is the accelerator, with TCG's translation buffer capped (see
// TCGBufferFor: the cap is what makes QEMU's overhead bounded).
func accelOpt(accel string, ramMiB int) option {
	if accel == "tcg" {
		return opt("-accel", "", "tcg", "tb-size", strconv.Itoa(TCGBufferFor(ramMiB)))
	}
	return opt("-accel", "", accel)
}

// busOf places a hot-plugged device back on its root port.
func busOf(port string) []string {
	if port == "" {
		return nil
	}
	return []string{"bus", port}
}

// hostMTU tells a virtio guest its NIC's MTU (the tap's, xl's mtu=), as
// Xen's netfront reads it from xenstore; e1000 and rtl8139 have no way.
func hostMTU(n engine.NIC) []string {
	if n.MTU == 0 || nicModels[n.Model] != "virtio-net-pci" {
		return nil
	}
	return []string{"host_mtu", strconv.Itoa(n.MTU)}
}

// nicModels maps vif model= to QEMU devices.
var nicModels = map[string]string{"virtio": "virtio-net-pci", "e1000": "e1000", "rtl8139": "rtl8139"}
