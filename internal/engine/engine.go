// Package engine is the boundary between the domain layer and whatever runs
// a virtual machine. It takes plain data (a LaunchSpec whose disks and NICs
// the host side has already prepared) and never reads domain files, the
// store or the ledger. QEMU is the one implementation (engine/qemu).
package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
)

// LaunchSpec is everything needed to start one VM.
type LaunchSpec struct {
	// Prealloc touches all guest RAM at start, so it is really there;
	// Balloon adds a virtio-balloon for mem-set.
	Prealloc bool
	Balloon  bool
	// HugePages, when set, is a hugetlbfs mount guest RAM is taken from.
	HugePages string
	// Incoming starts the VM waiting for its state (restore, migration).
	Incoming  bool
	Name      string
	UUID      string
	Accel     string // kvm or tcg, already decided
	MemoryMiB int
	VCPUs     int
	MaxVCPUs  int
	Kernel    string // direct kernel boot when set
	Initrd    string
	Cmdline   string
	Disks     []Disk
	NICs      []NIC
	RunDir    string // QMP socket, serial socket, pid file and logs live here
	// Boot is the firmware boot order (c disk, d cdrom, n network) when
	// there is no kernel; empty means the first disk.
	Boot string
	// RTCBase is QEMU's -rtc base: "utc", "localtime" or a start datetime.
	RTCBase string
	// CgroupProcs are cgroup.procs files the QEMU joins before it execs.
	CgroupProcs []string
	// LogFile is where QEMU's output goes, appended ("" = RunDir/qemu.log):
	// kept after the domain ends.
	LogFile string
	// RunAs is the unprivileged user QEMU switches to once its devices are
	// open (empty: stay root, only for debugging).
	RunAs string
	// HotplugSlots spare PCIe root ports (hp0..) for hot-plug.
	HotplugSlots int
	// VNC gives the VM a display whose VNC server listens on a unix
	// socket in RunDir (VNCDisplay.VNCPath), never a TCP port: the
	// daemon proxies it. VNCPassword: a client must pass RFB's VNC
	// authentication with the password VNCDisplay.SetVNCPassword sets
	// (none gets in before it is set).
	VNC         bool
	VNCPassword bool
	// GuestAgent gives the VM a virtio-serial port for the QEMU guest
	// agent (GuestAgent), its host end a socket in RunDir.
	GuestAgent bool
}

// GuestAgent is the optional ability to talk to the agent in the guest
// (LaunchSpec.GuestAgent). Every call is bounded by ctx and a short
// timeout of its own: an absent or wedged agent answers with an error,
// never a hang.
type GuestAgent interface {
	AgentInfo(ctx context.Context) (GuestInfo, error)
	// AgentShutdown asks the guest to power off.
	AgentShutdown(ctx context.Context) error
	// AgentFreeze and AgentThaw freeze and thaw the guest's
	// filesystems, returning how many.
	AgentFreeze(ctx context.Context) (int, error)
	AgentThaw(ctx context.Context) (int, error)
	AgentExec(ctx context.Context, argv []string, stdin []byte) (GuestExec, error)
	AgentSetPassword(ctx context.Context, user, password string) error
}

// GuestInfo is what the agent says about the guest.
type GuestInfo struct {
	OS     string
	Kernel string
	NICs   []GuestNIC
}

// GuestNIC is one guest interface and its addresses (CIDR form).
type GuestNIC struct {
	Name, MAC string
	Addresses []string
}

// GuestExec is what a command run through the agent did.
type GuestExec struct {
	ExitCode       int
	Stdout, Stderr []byte
}

// VNCDisplay is the optional ability to serve a VM's display over VNC
// (LaunchSpec.VNC).
type VNCDisplay interface {
	// VNCPath is the unix socket of the VM's VNC server.
	VNCPath() string
	// SetVNCPassword sets the RFB password; call it before Resume.
	SetVNCPassword(ctx context.Context, password string) error
}

// Disk is a prepared block device.
type Disk struct {
	ID       string // guest name, e.g. vda
	Port     string // hot-plug root port the device sits on ("" = the root bus)
	Path     string
	Format   string // raw or qcow2
	ReadOnly bool
	CDROM    bool
	IOPS     int   // total I/O operations per second, 0 = unlimited
	BPS      int64 // total bytes per second, 0 = unlimited
}

// NIC is a prepared network interface: the tap already exists.
// MaxHotplugSlots bounds LaunchSpec.HotplugSlots.
const MaxHotplugSlots = 8

type NIC struct {
	ID    string
	Tap   string
	MAC   string
	Model string // virtio, e1000, rtl8139
	Port  string // hot-plug root port ("" = the root bus)
	MTU   int    // the tap's MTU, told to a virtio guest (0: the tap's default)
}

// Exit reasons reported by Instance.Wait.
const (
	ExitPoweroff = "poweroff" // the guest powered off
	ExitReboot   = "reboot"   // the guest asked for a reset
	ExitCrash    = "crash"    // the guest panicked or the VMM died unexpectedly
	ExitHost     = "host"     // the host side ended it (quit, signal)
)

// Exit says why an instance ended.
type Exit struct {
	Reason string
	Detail string
}

// RunState is where a VM's vCPUs are.
type RunState int

const (
	RunOther      RunState = iota // a state the manager does not act on (shutting down, errors)
	RunPrelaunch                  // created, vCPUs never started
	RunRunning                    // vCPUs run
	RunPaused                     // stopped by a pause (or a finished save)
	RunIncoming                   // waiting for an incoming migration's state
	RunHandedOver                 // its state went to another host (migration done here)
)

func (s RunState) String() string {
	return [...]string{"other", "prelaunch", "running", "paused", "incoming", "handed-over"}[s]
}

// Instance is a running (or paused) VM.
type Instance interface {
	PID() int
	// SerialPath is the unix socket of the first serial port.
	SerialPath() string
	Resume(ctx context.Context) error
	Pause(ctx context.Context) error
	// Powerdown presses the ACPI power button.
	Powerdown(ctx context.Context) error
	// Reset resets the machine, which the engine reports as ExitReboot.
	Reset(ctx context.Context) error
	// Kill ends the VM at once. It is idempotent.
	Kill() error
	// Wait is closed-over: it delivers one Exit when the VM has ended and
	// its process is gone.
	Wait() <-chan Exit
	// Status is the VM's run state, in the engine's terms (never the
	// VMM's own strings: they stop at the engine).
	Status(ctx context.Context) (RunState, error)
	// VCPUThreads are the host thread ids of the vCPUs.
	VCPUThreads() []int
	// SetBalloon asks the guest's balloon driver for a memory size.
	SetBalloon(ctx context.Context, bytes int64) error
	// Balloon reports the guest's current memory size per the balloon.
	Balloon(ctx context.Context) (int64, error)
	// BlockStats reports per-disk read/write operation and byte counters.
	BlockStats(ctx context.Context) ([]BlockStats, error)
	// State is an opaque blob to persist; Engine.Attach takes it back.
	State() json.RawMessage
}

// Engine starts and re-finds instances.
type Engine interface {
	// Argv shows the command a LaunchSpec turns into (for --dry-run).
	Argv(spec LaunchSpec) ([]string, error)
	// Start launches a VM stopped before its first instruction; the caller
	// attaches the console and then calls Resume.
	Start(ctx context.Context, spec LaunchSpec) (Instance, error)
	// Attach re-finds a VM started by an earlier daemon. It returns
	// ErrGone if the VM is no longer there.
	Attach(ctx context.Context, state json.RawMessage) (Instance, error)
}

// BlockStats are one disk's cumulative counters.
type BlockStats struct {
	ID                    string
	ReadOps, WriteOps     int64
	ReadBytes, WriteBytes int64
}

// Migratable is the optional ability to stream a VM's state out and in
// (save/restore now, live migration later). The domain layer checks for it
// with a type assertion.
type Migratable interface {
	// MigrateTo streams the running VM's state into w and returns when the
	// stream is complete; the VM is then stopped (postmigrate).
	MigrateTo(ctx context.Context, w *os.File, o MigrateOptions) (MigrationStats, error)
	// MigrateFrom loads state from r into a VM started with
	// LaunchSpec.Incoming; it returns when the state is loaded (paused).
	MigrateFrom(ctx context.Context, r *os.File, o IncomingOptions) error
}

// IncomingOptions tune an incoming stream.
type IncomingOptions struct {
	// Listening, when set, is called once QEMU reads the stream. A source
	// must not start sending before that: QEMU 7.2 under TCG corrupts
	// guest memory (12 of 20 bare runs here) when its outgoing stream
	// blocks at the start.
	Listening func()
}

// MigrateOptions tune an outgoing stream.
type MigrateOptions struct {
	DowntimeMs int                  // target for the final stop-and-copy (0 = QEMU's default)
	Progress   func(MigrationStats) // called about every 100 ms while streaming
	// Start, when set, is called once the stream is ready to go (QEMU
	// tuned, w handed over) and before any byte is sent; an error aborts
	// with the VM untouched. A live migration waits there for the
	// destination to listen.
	Start func(ctx context.Context) error
}

// DiskMigrator is the optional ability to copy disks live to another host
// (migration without shared storage).
type DiskMigrator interface {
	// ServeDisks (destination) exports the disks, writable, over NBD on
	// the listening socket l.
	ServeDisks(ctx context.Context, l *os.File, disks []string, tls *StreamTLS) error
	StopServingDisks()
	// MirrorDisks (source) copies each disk into the destination's export
	// reached through its connected socket; it returns once all are in
	// sync, after which every guest write goes to both sides.
	MirrorDisks(ctx context.Context, targets []MirrorTarget, tls *StreamTLS, progress func(done, total int64)) error
	// FinishMirrors ends the in-sync mirrors once the guest has stopped.
	FinishMirrors(ctx context.Context) error
	// AbortMirrors stops them at once (failure paths).
	AbortMirrors()
}

// MirrorTarget is one disk's connection to the destination's export.
type MirrorTarget struct {
	Disk string // guest disk ID, e.g. vda
	Conn *os.File
}

// OverheadEstimator says how much memory an instance needs beyond guest
// RAM: what the ledger counts and the cgroup allows on top of the guest.
// One model, so the two never disagree.
type OverheadEstimator interface {
	OverheadMiB(s LaunchSpec) int
	// OverheadModel describes the formula for an accelerator (for info).
	OverheadModel(accel string) string
}

// DiskLocker moves the image locks of a running instance's disks (see
// internal/imagelock): a migration source releases them for the
// destination, which takes them once it runs the guest.
type DiskLocker interface {
	ReleaseDiskLocks(disks []Disk) error
	TakeDiskLocks(disks []Disk) error
}

// StreamTLS is QEMU's side of an encrypted disk-copy (NBD) stream: TLS
// with a key the two daemons agreed on over their mutual-TLS channel.
type StreamTLS struct {
	// Dir holds keys.psk (QEMU's tls-creds-psk layout), readable by QEMU's
	// user. The engine removes it as soon as QEMU has loaded it.
	Dir string
	// Username is the identity the client presents (outgoing only).
	Username string
}

// MigrationStats are QEMU's figures for a stream.
type MigrationStats struct {
	Status         string `json:"status"`
	TransferredB   int64  `json:"transferred_bytes"`
	RemainingB     int64  `json:"remaining_bytes"`
	DirtyRateBps   int64  `json:"dirty_bytes_per_sec"`
	ExpectedDownMs int64  `json:"expected_downtime_ms"`
	TotalMs        int64  `json:"total_ms"`
	DowntimeMs     int64  `json:"downtime_ms"`
}

// DiskSnapshotter is the optional ability to move a running VM's disks
// onto new overlay images (external snapshot): from then on the guest
// writes to the overlay and the old image is frozen, so it can back thin
// clones.
type DiskSnapshotter interface {
	// SnapshotDisks switches each disk to its overlay, a qcow2 file the
	// caller made with the current image as backing file, in order; it
	// returns how many were switched (all, unless it failed).
	SnapshotDisks(ctx context.Context, overlays []Overlay) (int, error)
}

// InternalSnapshotter is the optional ability to take and drop named
// snapshots inside a running VM's qcow2 disks.
type InternalSnapshotter interface {
	SnapshotInternal(ctx context.Context, disk, name string) error
	DeleteSnapshotInternal(ctx context.Context, disk, name string) error
}

// Overlay is one disk's new top image.
type Overlay struct {
	Disk string // guest disk ID, e.g. vda
	Path string
	// Base is the image the disk is on now; it becomes a read-only
	// backing file (its locks are lowered to a reader's).
	Base string
}

// DiskBackup is the optional ability to copy a running VM's disks at one
// instant while it keeps running (copy-before-write).
type DiskBackup interface {
	// BackupDisks copies each disk, as of one common instant, into its
	// target: a raw file of the disk's virtual size the caller made.
	BackupDisks(ctx context.Context, targets []BackupTarget, progress func(done, total int64)) error
}

// BackupTarget is one disk's copy.
type BackupTarget struct {
	Disk string // guest disk ID
	Path string
}

// PortName names hot-plug root port i.
func PortName(i int) string { return fmt.Sprintf("hp%d", i) }

// BlockHotplug is the optional ability to change a running VM's disks.
type BlockHotplug interface {
	// AttachDisk adds a virtio disk on root port d.Port.
	AttachDisk(ctx context.Context, d Disk) error
	// DetachDisk unplugs it (waiting for the guest to let go) and closes
	// the image.
	DetachDisk(ctx context.Context, id string) error
	// ChangeMedium puts path in CD-ROM id, or empties it ("").
	ChangeMedium(ctx context.Context, id, path string) error
	// Blocks reports, per disk ID, whether a medium is in and read-only.
	Blocks(ctx context.Context) (map[string][2]bool, error)
	// AttachNIC plugs a NIC on n.Port, on tap (an open queue of n.Tap:
	// QEMU, unprivileged, cannot attach to a tap itself).
	AttachNIC(ctx context.Context, n NIC, tap *os.File) error
	// DetachNIC unplugs it (waiting for the guest to let go).
	DetachNIC(ctx context.Context, id string) error
}

// NICID is the device ID of a NIC: by index for boot-time NICs, by port
// for hot-plugged ones (so it stays the same when others go).
func NICID(index int, port string) string {
	if port != "" {
		return "nic" + port
	}
	return fmt.Sprintf("net%d", index)
}

// VCPUHotplug is the optional ability to add and remove vCPUs of a
// running VM, within the maxvcpus it was started with (xl vcpu-set).
type VCPUHotplug interface {
	// SetVCPUs plugs or unplugs vCPUs until n are present: the lowest
	// free slots are filled, the highest-numbered vCPUs go first (as in
	// xl), never vCPU 0. An unplug waits for the guest to let go.
	// VCPUThreads names the threads of the vCPUs present afterwards.
	SetVCPUs(ctx context.Context, n int) error
}

// PlatformEvents is the optional ability to inject platform events
// (xl trigger, xl sysrq).
type PlatformEvents interface {
	// SendKeys presses the keys together and releases them (qcode
	// names, e.g. alt, sysrq, h).
	SendKeys(ctx context.Context, keys []string) error
	// InjectNMI sends a non-maskable interrupt to the guest.
	InjectNMI(ctx context.Context) error
	// Wakeup resumes a guest that suspended itself to RAM (S3).
	Wakeup(ctx context.Context) error
}

// CoreDumper is the optional ability to write the guest's memory to a
// file as an ELF core (xl dump-core).
type CoreDumper interface {
	// DumpCore writes the core into w; progress gets bytes written of
	// the total as the dump goes.
	DumpCore(ctx context.Context, w *os.File, progress func(done, total int64)) error
}

// Relocatable is the optional ability of a running VM to follow its run
// dir and log to new paths (xl rename): the caller has moved them (the
// VM's sockets move with the directory); the VM keeps running, and its
// State names the new paths from then on.
type Relocatable interface {
	Relocated(runDir, logFile string)
}
