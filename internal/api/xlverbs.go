package api

// The bodies and replies of xl's remaining per-domain verbs: vcpu-list,
// vcpu-set, sysrq, trigger, rename and dump-core.

// VCPU is one vCPU slot of a domain (xl vcpu-list): the vCPUs present,
// then the free slots up to maxvcpus (offline).
type VCPU struct {
	VCPU   int  `json:"vcpu"`
	Online bool `json:"online"`
	// CPU is the host CPU it last ran on (-1: offline).
	CPU int `json:"cpu"`
	// State is xl's: "r" running, "b" blocked, "p" paused, "-" offline.
	State   string  `json:"state"`
	TimeSec float64 `json:"time_sec"`
	// Affinity is the host CPUs it may run on ("all" or a list such as
	// 0-3,6).
	Affinity string `json:"affinity"`
	ThreadID int    `json:"thread_id,omitempty"`
}

// VCPUSetRequest is the body of vcpu-set: the number of vCPUs present,
// 1..maxvcpus.
type VCPUSetRequest struct {
	VCPUs int `json:"vcpus"`
}

// SysRqRequest is the body of sysrq: one Magic SysRq letter or digit.
type SysRqRequest struct {
	Key string `json:"key"`
}

// Trigger events (xl trigger).
const (
	TriggerNMI      = "nmi"      // a non-maskable interrupt
	TriggerReset    = "reset"    // a hard reset (then on_reboot)
	TriggerPower    = "power"    // the ACPI power button
	TriggerS3Resume = "s3resume" // wake a guest suspended to RAM
	TriggerSleep    = "sleep"    // the ACPI sleep button: QEMU has none
	TriggerInit     = "init"     // an INIT IPI: QEMU cannot inject one
)

// TriggerRequest is the body of trigger.
type TriggerRequest struct {
	Event string `json:"event"`
}

// RenameRequest is the body of rename: the domain's new name.
type RenameRequest struct {
	Name string `json:"name"`
}

// DumpCoreRequest is the body of dump-core: an absolute path on the
// daemon's host that must not exist yet.
type DumpCoreRequest struct {
	Path string `json:"path"`
}

// DumpCoreResult is what a finished dump-core wrote.
type DumpCoreResult struct {
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
}
