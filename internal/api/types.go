// Package api holds the wire types shared by the daemon and its clients.
// It imports nothing internal: the CLI, the web UI and remote peers all speak
// exactly these structs, and an xl.cfg file parses into DomainSpec too.
package api

import "time"

// Version is the API path prefix.
const Version = "/1.0"

// Domain lifecycle actions, as in xl.cfg's on_poweroff/on_reboot/on_crash.
const (
	ActionDestroy       = "destroy"
	ActionRestart       = "restart"
	ActionPreserve      = "preserve"
	ActionRenameRestart = "rename-restart"
	// Accepted for Xen files; coredump-* act as their plain action (no core
	// is written yet) and soft-reset as restart.
	ActionCoredumpDestroy = "coredump-destroy"
	ActionCoredumpRestart = "coredump-restart"
	ActionSoftReset       = "soft-reset"
)

// DomainSpec is the one description of a domain: what xl.cfg parses into
// and what POST /1.0/domains accepts.
type DomainSpec struct {
	Name       string `json:"name"`
	UUID       string `json:"uuid,omitempty"`
	Type       string `json:"type"` // pv, pvh or hvm
	MemoryMiB  int    `json:"memory_mib"`
	MaxMemMiB  int    `json:"maxmem_mib"`
	VCPUs      int    `json:"vcpus"`
	MaxVCPUs   int    `json:"maxvcpus"`
	Kernel     string `json:"kernel,omitempty"`
	Ramdisk    string `json:"ramdisk,omitempty"`
	Cmdline    string `json:"cmdline,omitempty"`
	Disks      []Disk `json:"disks,omitempty"`
	Vifs       []Vif  `json:"vifs,omitempty"`
	OnPoweroff string `json:"on_poweroff"`
	OnReboot   string `json:"on_reboot"`
	OnCrash    string `json:"on_crash"`
	OnWatchdog string `json:"on_watchdog"`
	// CPUs is xl's cpus= hard affinity (CPULIST: "all", "0-3,^1"); empty
	// means no pinning. CPUWeight (1..65535, default 256) and Cap (percent
	// of one host CPU, 0 = none) are the credit scheduler's settings.
	CPUs      string `json:"cpus,omitempty"`
	CPUWeight int    `json:"cpu_weight"`
	Cap       int    `json:"cap"`
	// HotplugSlots (Ringfence key hotplug_slots, 0..8) is how many PCIe
	// root ports the VM gets for disks and NICs attached while it runs.
	// Each costs ~50 ms of guest boot under TCG (the guest probes the
	// port), so none unless asked for.
	HotplugSlots int `json:"hotplug_slots,omitempty"`
	// Bootloader (pygrub) means: boot the disk's own bootloader via firmware.
	Bootloader string `json:"bootloader,omitempty"`
	// Boot is the firmware boot order, xl letters c (disk), d (cdrom), n (net).
	Boot         string `json:"boot,omitempty"`
	Localtime    bool   `json:"localtime,omitempty"`
	RTCOffsetSec int    `json:"rtc_timeoffset,omitempty"`
	// Accel forces "kvm" or "tcg"; empty means the host's best.
	Accel string `json:"accel,omitempty"`
	// Persistent (Ringfence key persistent = 1) makes `create` define the
	// domain too: kept across stops, crashes and host reboots.
	Persistent bool `json:"persistent,omitempty"`
	// VNC (xl vnc = 1) gives the domain a display served over VNC, reached
	// only through the daemon (GET /1.0/domains/NAME/vnc, `ringfence vnc
	// NAME`), never on a host port. VNCPassword (xl vncpasswd, at most 8
	// characters: RFB's DES) is the RFB password; write-only: the API
	// shows HiddenPassword in its place.
	VNC         bool   `json:"vnc,omitempty"`
	VNCPassword string `json:"vncpasswd,omitempty"`
	// TransferQuota (Ringfence key transfer_quota, e.g. "100G") is the
	// bytes its vifs may move (received + sent) in a calendar month (UTC)
	// before TransferAction (transfer_action: notify, pause or
	// throttle:RATE; default notify) is taken, within a minute of the
	// crossing (internal/usage). 0: no quota.
	TransferQuota  int64  `json:"transfer_quota,omitempty"`
	TransferAction string `json:"transfer_action,omitempty"`
	// Provision, when set, makes the domain from an OS image.
	Provision *Provision `json:"provision,omitempty"`
	// GuestAgent (Ringfence key guest_agent = 1; on for a provisioned
	// domain) gives the VM the QEMU guest agent's virtio-serial port.
	GuestAgent bool `json:"guest_agent,omitempty"`
	// HA (Ringfence key ha = 1, `ringfence ha NAME on`): in a cluster,
	// the domain is restarted on a surviving host when its host fails.
	// Every disk must be on a cluster pool (the same path on every host).
	HA bool `json:"ha,omitempty"`
}

// HiddenPassword stands in for a set VNC password wherever the API shows
// a spec. Given back in an update (`config edit`, or a file `config
// export` wrote), it means "keep the password set now".
const HiddenPassword = "********"

// Shown is the spec as the API shows it: the VNC password hidden.
func (s DomainSpec) Shown() DomainSpec {
	if s.VNCPassword != "" {
		s.VNCPassword = HiddenPassword
	}
	if s.Provision != nil && s.Provision.PasswordHash != "" {
		p := *s.Provision
		p.PasswordHash = HiddenPassword
		s.Provision = &p
	}
	return s
}

// Autostart is when a defined domain starts at host boot.
type Autostart struct {
	On       bool `json:"on"`
	Order    int  `json:"order,omitempty"`     // lower first
	DelaySec int  `json:"delay_sec,omitempty"` // wait after starting it
}

// HostShutdownRequest ends every running domain (a host shutdown).
type HostShutdownRequest struct {
	TimeoutSec int    `json:"timeout_sec,omitempty"` // per guest, then destroy (default 120)
	SaveDir    string `json:"save_dir,omitempty"`    // save them instead, restored at the next boot
}

// HostShutdownResult is what happened to each domain.
type HostShutdownResult struct {
	Domains map[string]string `json:"domains"`
}

// StopInfo is why a domain last stopped.
type StopInfo struct {
	State  State     `json:"state"` // shutdown or crashed
	Reason string    `json:"reason"`
	At     time.Time `json:"at,omitzero"`
}

// Definition is a defined domain's stored desired state.
type Definition struct {
	Spec      DomainSpec  `json:"spec"`
	Pending   *DomainSpec `json:"pending,omitempty"` // applied at the next start
	Autostart Autostart   `json:"autostart"`
	Saved     string      `json:"saved,omitempty"` // restored at the next start
	LastStop  StopInfo    `json:"last_stop"`
	Created   time.Time   `json:"created"`
	Updated   time.Time   `json:"updated"`
}

// DefineRequest defines a domain (POST /1.0/definitions) or replaces a
// definition (PUT /1.0/definitions/{name}).
type DefineRequest struct {
	Spec DomainSpec `json:"spec"`
	// Tenant owns a new definition ("" = the host's own; a tenant's
	// principal always defines in its own tenant). Ignored on PUT: a
	// domain keeps its owner.
	Tenant string `json:"tenant,omitempty"`
}

// Disk is one virtual block device.
type Disk struct {
	Target string `json:"target"`          // host path
	VDev   string `json:"vdev"`            // name in the domain file (xvda, hda1...)
	Guest  string `json:"guest"`           // what the guest sees (vda, vdb...)
	Format string `json:"format"`          // raw or qcow2
	Access string `json:"access"`          // rw or ro
	CDROM  bool   `json:"cdrom,omitempty"` // devtype=cdrom
	// Ringfence disk-spec keys iops= and bps= (k/m/g suffixes) throttle
	// the disk in QEMU; 0 = unlimited.
	IOPS int   `json:"iops,omitempty"`
	BPS  int64 `json:"bps,omitempty"`
	// Port is the hot-plug slot (a PCIe root port) of a disk attached
	// while the domain ran; its device stays there, so an incoming
	// migration or restore builds the same machine.
	Port string `json:"port,omitempty"`
}

// BlockRequest attaches a disk (Spec: an xl disk spec) or changes a
// CD-ROM's medium (VDev and Path; Path "" ejects).
type BlockRequest struct {
	Spec string `json:"spec,omitempty"`
	VDev string `json:"vdev,omitempty"`
	Path string `json:"path,omitempty"`
}

// BlockDevice is one disk as the running VM has it.
type BlockDevice struct {
	Disk
	Inserted bool `json:"inserted"` // QEMU has a medium in it
	ReadOnly bool `json:"read_only"`
}

// Vif is one virtual network interface.
type Vif struct {
	MAC string `json:"mac"`
	// Bridge is the bridge (or network) the tap is a port of; a vif with
	// none goes on DefaultBridge, as in xl.
	Bridge string   `json:"bridge,omitempty"`
	IP     []string `json:"ip,omitempty"`
	Model  string   `json:"model,omitempty"` // virtio (default), e1000, rtl8139
	// Rate is xl's rate= as written (10Mb/s, 1MB/s@20ms); RateBytes per
	// RateIntervalUS is what it means.
	Rate           string `json:"rate,omitempty"`
	RateBytes      int64  `json:"rate_bytes,omitempty"`
	RateIntervalUS int64  `json:"rate_interval_us,omitempty"`
	VifName        string `json:"vifname,omitempty"`
	Type           string `json:"type,omitempty"` // ioemu or vif; both are virtio here
	// MTU is xl's mtu=: the tap's MTU (and the guest NIC's, for virtio);
	// 0 = the bridge's.
	MTU int `json:"mtu,omitempty"`
	// Port is the hot-plug slot of a vif attached while the domain ran
	// (see Disk.Port).
	Port string `json:"port,omitempty"`
}

// DefaultBridge is where a vif with no bridge= goes: xl's default.
const DefaultBridge = "xenbr0"

// NetworkRequest attaches a vif (Spec: an xl vif spec) or detaches one
// (Dev: its index or MAC).
type NetworkRequest struct {
	Spec string `json:"spec,omitempty"`
	Dev  string `json:"dev,omitempty"`
}

// NetworkDevice is one vif of a domain as xl network-list shows it.
type NetworkDevice struct {
	Vif
	Index int    `json:"index"`
	Tap   string `json:"tap,omitempty"`
	// Addresses the tap may send from: ip=, or its lease on a NAT network.
	Addresses []string `json:"addresses,omitempty"`
}

// CreateRequest is the body of POST /1.0/domains.
type CreateRequest struct {
	Spec DomainSpec `json:"spec"`
	// Persistent defines it too (as the file's persistent = 1).
	Persistent bool `json:"persistent,omitempty"`
	Paused     bool `json:"paused,omitempty"` // like xl create -p
	DryRun     bool `json:"dry_run,omitempty"`
	// Tenant owns the new domain ("" = the host's own). A tenant's
	// principal always creates in its own tenant.
	Tenant string `json:"tenant,omitempty"`
	// Host pins the domain to a host of the cluster ("": the host with
	// the most room in its ledger; a host in no cluster: this one).
	Host string `json:"host,omitempty"`
}

// DryRun is what a dry-run create returns: the validated spec and the argv
// that would be executed.
type DryRun struct {
	Spec DomainSpec `json:"spec"`
	Argv []string   `json:"argv"`
	// OverheadMiB is QEMU's memory beyond guest RAM this domain is
	// guaranteed (the ledger counts it, the cgroup allows it).
	OverheadMiB int `json:"overhead_mib"`
}

// State is a domain's state, mapped to xl's letters r b p s c d.
type State string

const (
	StateRunning  State = "running"
	StateBlocked  State = "blocked" // running, no vCPU on a host CPU now (shown, never stored)
	StatePaused   State = "paused"
	StateShutdown State = "shutdown"
	StateCrashed  State = "crashed"
	StateDying    State = "dying"
)

// Domain is a domain as the daemon reports it.
type Domain struct {
	Spec       DomainSpec `json:"spec"`
	ID         int        `json:"id"`
	State      State      `json:"state"`
	Flags      string     `json:"flags"` // xl's six state letters, e.g. "-b----"
	CPUTime    float64    `json:"cpu_time_sec"`
	StartedAt  time.Time  `json:"started_at,omitzero"`
	UptimeSec  float64    `json:"uptime_sec"`
	PID        int        `json:"pid,omitempty"`
	Taps       []string   `json:"taps,omitempty"`
	LastReason string     `json:"last_reason,omitempty"` // why it last stopped
	// LastConsole are the console's last lines when it stopped for good
	// (a crash loop braked).
	LastConsole []string `json:"last_console,omitempty"`
	// Defined: it has a stored definition (it outlives stops and host
	// reboots); Autostart: it starts at host boot.
	Defined   bool       `json:"defined,omitempty"`
	Autostart *Autostart `json:"autostart,omitempty"`
	// Tenant owns the domain ("" = the host's own).
	Tenant string `json:"tenant,omitempty"`
	// Host is the cluster host the domain is on (set on a host in a
	// cluster, whose list has every host's domains).
	Host string `json:"host,omitempty"`
}

// StartRequest starts a stopped (kept) domain again.
type StartRequest struct {
	Paused bool `json:"paused,omitempty"`
}

// ShutdownRequest is the body of the shutdown action.
type ShutdownRequest struct {
	Wait       bool `json:"wait"`
	Force      bool `json:"force"`       // destroy if still up after Timeout
	TimeoutSec int  `json:"timeout_sec"` // default 60
}

// HostInfo is GET /1.0/host.
type HostInfo struct {
	Hostname    string   `json:"hostname"`
	CPUs        int      `json:"cpus"`
	MemTotalMiB int      `json:"mem_total_mib"`
	MemFreeMiB  int      `json:"mem_free_mib"` // MemAvailable
	Accel       string   `json:"accel"`
	AccelReason string   `json:"accel_reason"`
	QEMUVersion string   `json:"qemu_version"`
	QEMUBinary  string   `json:"qemu_binary"`
	Version     string   `json:"ringfence_version"`
	StateDir    string   `json:"state_dir"`
	Domains     int      `json:"domains"`
	Ledger      Ledger   `json:"ledger"`
	Warnings    []string `json:"warnings,omitempty"`
	// QEMUOverhead is how QEMU's memory beyond guest RAM is counted here.
	QEMUOverhead string `json:"qemu_overhead"`
	// Peer is this host's peer trust (nil until `host trust`/`host join`).
	Peer *PeerStatus `json:"peer,omitempty"`
	// Cgroups: the version (1, 2; 0 = none), where the domains' cgroups
	// are, and the systemd scope holding them on a systemd v2 host.
	CgroupVersion int    `json:"cgroup_version"`
	CgroupBase    string `json:"cgroup_base,omitempty"`
	CgroupScope   string `json:"cgroup_scope,omitempty"`
}

// PeerStatus is this host's identity among its peers.
type PeerStatus struct {
	Role          string    `json:"role"` // authority, member or offline
	Name          string    `json:"name"`
	Serial        string    `json:"serial"`
	NotAfter      time.Time `json:"not_after"` // the certificate's expiry
	Names         []string  `json:"names"`     // what peers may call it (SANs)
	CAFingerprint string    `json:"ca_fingerprint"`
	Authority     string    `json:"authority,omitempty"`
	ListVersion   int64     `json:"list_version,omitempty"`
	Members       int       `json:"members,omitempty"`
	Warning       string    `json:"warning,omitempty"`
}

// TrustRequest makes this host trusted (POST /1.0/host/trust): a new CA
// (the authority), or an offline copy of one.
type TrustRequest struct {
	PeerName string   `json:"peer_name,omitempty"` // default: the hostname
	Names    []string `json:"names,omitempty"`     // extra SANs (names, IPs)
	Offline  bool     `json:"offline,omitempty"`   // shared CA key, no peer list
	CAFrom   string   `json:"ca_from,omitempty"`   // copy an offline CA from this dir
}

// TokenRequest asks the authority for a join token.
type TokenRequest struct {
	PeerName string `json:"peer_name,omitempty"` // only this host may use it
	TTLSec   int    `json:"ttl_sec,omitempty"`   // default 600, at most 3600
	Addr     string `json:"addr,omitempty"`      // HOST:PORT joiners dial
}

// PeerToken is a join token (shown once).
type PeerToken struct {
	Token   string    `json:"token"`
	Name    string    `json:"peer_name,omitempty"`
	Expires time.Time `json:"expires"`
	Addr    string    `json:"addr"`
}

// JoinRequest joins this host with a token from the authority.
type JoinRequest struct {
	Token    string   `json:"token"`
	PeerName string   `json:"peer_name,omitempty"`
	Names    []string `json:"names,omitempty"`
}

// PeerList is `host peers`.
type PeerList struct {
	Role      string `json:"role"`
	Self      string `json:"self"`
	Authority string `json:"authority,omitempty"`
	Version   int64  `json:"version,omitempty"`
	Peers     []Peer `json:"peers"`
}

// Peer is one trusted host on the peer list.
type Peer struct {
	Name     string    `json:"name"`
	Serial   string    `json:"serial"` // of its current certificate, hex
	NotAfter time.Time `json:"not_after"`
	// Authority marks the host that holds the CA key.
	Authority bool `json:"authority,omitempty"`
	// Addr is where the authority sends list updates (its peer listener).
	Addr     string    `json:"addr,omitempty"`
	JoinedAt time.Time `json:"joined_at"`
	// Names are the host names and addresses in its certificate: no two
	// hosts may claim one, so none can pose as another's address.
	Names []string `json:"names,omitempty"`
}

// Ledger is the host's memory book-keeping: nothing is admitted unless
// it fits in Total - Reserved - sum(Entries).
type Ledger struct {
	TotalMiB    int           `json:"total_mib"`
	ReservedMiB int           `json:"reserved_mib"` // like Xen's dom0_mem
	FreeMiB     int           `json:"free_mib"`
	CPUs        int           `json:"cpus"`
	VCPURatio   float64       `json:"vcpu_ratio"` // vCPUs allowed per host CPU (1 = none oversold)
	VCPUsFree   int           `json:"vcpus_free"`
	Entries     []LedgerEntry `json:"entries"`
	// Tenants are the tenants' reservations: held for them whether their
	// domains use them or not (FreeMiB and VCPUsFree already exclude them).
	Tenants []LedgerTenant `json:"tenants,omitempty"`
}

// LedgerEntry is one domain's admitted memory (guest RAM + QEMU overhead).
type LedgerEntry struct {
	Domain      string `json:"domain"`
	MemoryMiB   int    `json:"memory_mib"`
	OverheadMiB int    `json:"overhead_mib"`
	VCPUs       int    `json:"vcpus"`
	// Tenant is whose reservation the entry draws from ("" = the host's).
	Tenant string `json:"tenant,omitempty"`
}

// MemRequest is the body of mem-set and mem-max.
type MemRequest struct {
	MemoryMiB int `json:"memory_mib"`
}

// SchedCreditRequest is the body of sched-credit; -1 leaves a field as is.
type SchedCreditRequest struct {
	Weight int `json:"weight"`
	Cap    int `json:"cap"`
}

// VCPUPinRequest is the body of vcpu-pin; VCPU -1 means all.
type VCPUPinRequest struct {
	VCPU int    `json:"vcpu"`
	CPUs string `json:"cpus"`
}

// SaveRequest is the body of the save action.
type SaveRequest struct {
	Path       string `json:"path"`       // absolute, on the daemon's host
	Checkpoint bool   `json:"checkpoint"` // keep the domain running (xl save -c)
}

// SaveConfirm is the body of POST /1.0/domains/NAME/save/confirm: a
// remote client holds a checked copy of the image streamed to it (the
// token came in the X-Ringfence-Save-Token header of the stream).
type SaveConfirm struct {
	Token string `json:"token"`
}

// RestoreRequest is the body of POST /1.0/restore.
type RestoreRequest struct {
	Path   string `json:"path"`
	Paused bool   `json:"paused"`
}

// MigrateRequest is the body of the migrate action.
type MigrateRequest struct {
	Target     string `json:"target"`      // host:port of the destination's peer listener
	DowntimeMs int    `json:"downtime_ms"` // target for the final pause (0 = 30 ms)
	// PlainStream sends guest memory unencrypted (a dedicated, trusted
	// migration network); the hosts still authenticate each other and the
	// stream. Default: QEMU encrypts it with TLS.
	PlainStream bool `json:"plain_stream,omitempty"`
	// WithStorage copies the writable disks live (no shared storage),
	// into StorageDir on the destination ("" = the same paths).
	WithStorage bool   `json:"with_storage,omitempty"`
	StorageDir  string `json:"storage_dir,omitempty"`
}

// MigrationProgress is streamed while a migration runs.
type MigrationProgress struct {
	Status         string `json:"status"`
	TransferredB   int64  `json:"transferred_bytes"`
	RemainingB     int64  `json:"remaining_bytes"`
	DirtyRateBps   int64  `json:"dirty_bytes_per_sec"`
	ExpectedDownMs int64  `json:"expected_downtime_ms"`
	TotalMs        int64  `json:"total_ms"`
	DowntimeMs     int64  `json:"downtime_ms"`
}

// MigrationResult is the outcome of a migration.
type MigrationResult struct {
	TotalMs      int64 `json:"total_ms"`      // from the command to the guest running on the destination
	QEMUTotalMs  int64 `json:"qemu_total_ms"` // QEMU's own total-time
	DowntimeMs   int64 `json:"downtime_ms"`   // QEMU-reported stop-and-copy time
	TransferredB int64 `json:"transferred_bytes"`
	DiskBytes    int64 `json:"disk_bytes,omitempty"` // copied with --with-storage
}

// Pool is a directory that holds volumes.
type Pool struct {
	Name string `json:"name"`
	Dir  string `json:"dir"`
	// Tenant owns the pool and its volumes ("" = the host's); a host
	// pool that is Shared may be read by every tenant's domains (images,
	// kernels, ISOs), never written.
	Tenant string `json:"tenant,omitempty"`
	Shared bool   `json:"shared,omitempty"`
	// Cluster: declared cluster-wide (`--cluster`): every host of the
	// cluster has it, on the same (shared) path; an HA domain's disks
	// must all be on such pools.
	Cluster bool `json:"cluster,omitempty"`
}

// Volume is a disk image in a pool.
type Volume struct {
	Pool       string `json:"pool"`
	Name       string `json:"name"`
	Path       string `json:"path"`
	Format     string `json:"format"`
	VirtualB   int64  `json:"virtual_bytes"`
	AllocatedB int64  `json:"allocated_bytes"`
	Backing    string `json:"backing,omitempty"` // template of a thin clone
}

// VolumeRequest creates (or, with only SizeB, resizes) a volume.
type VolumeRequest struct {
	Name   string `json:"name"`
	SizeB  int64  `json:"size_bytes,omitempty"`
	Format string `json:"format,omitempty"` // raw (default) or qcow2
	From   string `json:"from,omitempty"`   // template volume in the same pool: thin qcow2 clone
}

// CloneRequest makes a new domain from an existing one (thin-cloned disks,
// new MACs).
type CloneRequest struct {
	Name   string `json:"name"`
	Paused bool   `json:"paused,omitempty"`
	// Vifs are xl vif specs for the clone's vifs by index ("" keeps the
	// source's with a new MAC); Set are key=value settings of its own.
	Vifs []string `json:"vifs,omitempty"`
	Set  []string `json:"set,omitempty"`
	// Tenant owns the clone ("" keeps the source's owner).
	Tenant string `json:"tenant,omitempty"`
}

// Snapshot is a named point of a domain's disks (and memory).
type Snapshot struct {
	Name    string         `json:"name"`
	Domain  string         `json:"domain"`
	Created time.Time      `json:"created"`
	Disks   []SnapshotDisk `json:"disks"`
	Memory  bool           `json:"memory"` // the running state too: revert resumes that moment
}

// SnapshotDisk is one disk a snapshot covers.
type SnapshotDisk struct {
	Guest string `json:"guest"`
	Path  string `json:"path"`
}

// SnapshotRequest creates a snapshot.
type SnapshotRequest struct {
	Name   string `json:"name"`
	Memory bool   `json:"memory,omitempty"`
}

// JobProgress is an operation's progress (Operation.Progress): one
// shape for every long job; a migration adds its own figures.
type JobProgress struct {
	Phase     string             `json:"phase"`
	Done      int64              `json:"done_bytes"`
	Total     int64              `json:"total_bytes,omitempty"` // 0 when unknown
	Migration *MigrationProgress `json:"migration,omitempty"`
}

// ExportRequest writes a domain to an archive.
type ExportRequest struct {
	Path string `json:"path"`
}

// ExportResult describes the archive written.
type ExportResult struct {
	Path       string `json:"path"`
	Bytes      int64  `json:"bytes"`       // archive size
	InputBytes int64  `json:"input_bytes"` // disks and boot files before compression
	Ms         int64  `json:"ms"`
}

// ImportRequest creates a domain from an archive.
type ImportRequest struct {
	Path string `json:"path"`
	Dir  string `json:"dir,omitempty"`  // where its files go (default STATE/imports)
	Name string `json:"name,omitempty"` // import under another name (new MACs)
	// NoStart puts the files in place and writes their domain file
	// without starting the domain; Paused starts it paused.
	NoStart bool `json:"no_start,omitempty"`
	Paused  bool `json:"paused,omitempty"`
	// Tenant owns the imported domain ("" = the host's own; a tenant's
	// principal always imports into its own tenant).
	Tenant string `json:"tenant,omitempty"`
}

// Network is a managed network: a bridge (and its uplink) the daemon
// keeps; vifs name it in bridge=.
type Network struct {
	Name    string   `json:"name"`
	Bridge  string   `json:"bridge"`
	Uplink  string   `json:"uplink,omitempty"`
	Created bool     `json:"created,omitempty"` // the daemon made the bridge (and removes it)
	Ports   []string `json:"ports,omitempty"`   // interfaces on the bridge now
	// A NAT network is a private bridge: the daemon gives it Gateway
	// (the subnet's first address), serves DHCP and DNS there, and
	// masquerades the subnet out of the host.
	NAT     bool   `json:"nat,omitempty"`
	Subnet  string `json:"subnet,omitempty"` // 10.77.0.0/24
	Gateway string `json:"gateway,omitempty"`
	// Tenant owns the network ("" = the host's); only its domains may
	// have a vif on it. A host network that is Shared may take every
	// tenant's domains too.
	Tenant string `json:"tenant,omitempty"`
	Shared bool   `json:"shared,omitempty"`
	// Cluster: declared cluster-wide (`--cluster`): every host of the
	// cluster has it, made from the declaration in etcd.
	Cluster bool `json:"cluster,omitempty"`
}

// Lease is one address a NAT network's DHCP server hands out. Every vif on
// a NAT network has one from the moment its domain starts (Fixed when the
// vif's ip= names it); it is kept after the domain goes until Expires, so
// a domain created again gets its address back.
type Lease struct {
	Network string    `json:"network"`
	MAC     string    `json:"mac"`
	IP      string    `json:"ip"`
	Domain  string    `json:"domain,omitempty"`
	Fixed   bool      `json:"fixed,omitempty"`
	Active  bool      `json:"active"` // a running domain's vif holds it
	Expires time.Time `json:"expires"`
}
