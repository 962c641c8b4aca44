// Package domain holds the operations every frontend (CLI via the API,
// later the web UI and peers) calls: create, list, shutdown, reboot,
// destroy, pause, unpause, console, and re-attach at daemon start.
//
// Each operation validates first, then takes the steps (ledger, run dir,
// taps, engine, store) with a revert stack, so a failure leaves nothing
// behind. Each running incarnation of a domain has one watcher goroutine
// that applies on_poweroff / on_reboot / on_crash when its VM ends.
package domain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/config"
	"github.com/ringfence/ringfence/internal/crashpoint"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/names"
	"github.com/ringfence/ringfence/internal/network"
	"github.com/ringfence/ringfence/internal/procfs"
	"github.com/ringfence/ringfence/internal/revert"
	"github.com/ringfence/ringfence/internal/storage"
	"github.com/ringfence/ringfence/internal/store"
)

const (
	keyDomains = "domains/"
	keyNextID  = "meta/next-domid"
)

// record is what the store keeps per domain.
type record struct {
	Spec       api.DomainSpec  `json:"spec"`
	ID         int             `json:"id"`
	State      string          `json:"state"`
	Accel      string          `json:"accel"`
	StartedAt  time.Time       `json:"started_at"`
	Engine     json.RawMessage `json:"engine,omitempty"`
	Taps       []string        `json:"taps,omitempty"`
	LastReason string          `json:"last_reason,omitempty"`
	Generation int             `json:"generation"`
	// BootMaxMemMiB is the RAM the VM was started with; mem-max may lower
	// Spec.MaxMemMiB below it but never raise it above.
	BootMaxMemMiB int `json:"boot_maxmem_mib,omitempty"`
	// QEMUUID is the uid (and gid) the running incarnation's QEMU runs
	// as, from Options.QEMUIDs; 0 = root (no range configured).
	QEMUUID int `json:"qemu_uid,omitempty"`
	// Restarts are the times of the restarts the guest caused (crashes,
	// its own resets) within the brake's window.
	Restarts []time.Time `json:"restarts,omitempty"`
	// LastConsole are the console's last lines when it stopped for good.
	LastConsole []string `json:"last_console,omitempty"`
	// Starting is the incarnation being started, written before anything
	// is made on the host and cleared once its vCPUs run: a daemon killed
	// in between finds what to clean up or to finish (see recoverStart).
	Starting *startIntent `json:"starting,omitempty"`
	// Ending is what was decided for an incarnation that ended (its
	// on_* action), written before it is carried out.
	Ending *endIntent `json:"ending,omitempty"`
}

// startKind says why an incarnation starts, which decides what a daemon
// that finds it interrupted does: a restart is finished, a create undone.
type startKind string

const (
	kindCreate  startKind = "create"  // create, clone, import
	kindRestore startKind = "restore" // from a save file
	kindMigrate startKind = "migrate" // an incoming live migration
	kindStart   startKind = "start"   // a kept domain started again
	kindRestart startKind = "restart" // on_reboot/on_crash restart
)

type startIntent struct {
	Kind   startKind `json:"kind"`
	ID     int       `json:"id"`
	Taps   []string  `json:"taps,omitempty"`
	Resume bool      `json:"resume"` // its vCPUs are to run once it is up
}

type endIntent struct {
	Action string `json:"action"`
	State  string `json:"state"`
}

type dom struct {
	mu      sync.Mutex
	rec     record
	inst    engine.Instance
	console *Console
	intent  string // "destroy" while we are ending it on purpose
	// migrating is set while the domain streams to another host;
	// cancelMig stops that stream.
	migrating bool
	cancelMig context.CancelFunc
	// snap is the last rendered view, served while an operation holds mu
	// for long (an incoming migration loads for seconds): list never hangs.
	snap atomic.Pointer[api.Domain]
	// con is console, readable without mu: a client attaches while a
	// create or an incoming migration still holds mu, and so sees the
	// guest's first line as it comes.
	con   atomic.Pointer[Console]
	ended chan struct{} // closed when the current incarnation's exit is handled
	// uid is the uid of the QEMU this domain runs (0: none), readable
	// under Manager.mu without d.mu.
	uid atomic.Int64
	// live is the running instance, readable without mu, and destroying
	// is set before destroy kills it: destroy must get through even while
	// an operation holds mu waiting on a hung QEMU, and the exit it causes
	// is a destroy, not a crash.
	live       atomic.Pointer[liveInst]
	destroying atomic.Bool
	// hostStop is set while a host shutdown ends the domain: however it
	// ends (power button or destroy after the timeout) it is kept,
	// stopped, even a transient one: the host went down, not the guest.
	hostStop atomic.Bool
	// def is the stored definition of a defined domain (nil: transient).
	def *definition
	// stray are the pids of a QEMU of this domain that runs but could not
	// be re-attached: reported, holding its resources, killed only by an
	// explicit destroy.
	stray []int
}

type liveInst struct{ engine.Instance }

// setInst records the running instance (nil: none). Caller holds d.mu.
func (d *dom) setInst(inst engine.Instance) {
	d.inst = inst
	if inst == nil {
		d.live.Store(nil)
	} else {
		d.live.Store(&liveInst{inst})
	}
}

// Options configure a Manager.
type Options struct {
	Store  store.Store
	Engine engine.Engine
	Ledger *host.Ledger
	Accel  host.Accel
	RunDir string // per-domain runtime dirs go under RunDir/domains
	Log    *slog.Logger
	// QEMUIDs is the uid range QEMUs run as, one uid per running domain
	// (QEMU drops to it after opening its devices). Count 0: root.
	QEMUIDs host.IDRange
	// Cgroups, when set, puts each QEMU in its own cgroup with the
	// domain's memory limit, CPU weight and cap.
	Cgroups *host.Cgroups
	// HostCPUs is the number of host CPUs cpus= may name.
	HostCPUs int
	// OverheadMiB overrides the per-domain QEMU overhead estimate.
	OverheadMiB int
	// Networks is the network side of vifs (internal/netmgr); nil: bridge=
	// names a bridge as it is and no tap is filtered.
	Networks Networks
	// StateDir holds files the daemon keeps (snapshot memory states).
	StateDir string
	// Policy decides which host paths may be disks, boot files and media
	// (nil: no policy; tests of the manager alone).
	Policy *storage.Policy
	// Chains knows the overlays Ringfence made: their bases are never
	// opened for writing.
	Chains *storage.Chains
	// LogDir holds each domain's logs (LogDir/NAME/{console,qemu}.log);
	// LogRetention is how long those of domains that are gone are kept
	// (0: 30 days).
	LogDir       string
	LogRetention time.Duration
	// BootIDFile is where the kernel's boot id is read ("" = /proc/sys/
	// kernel/random/boot_id); tests point it at a file they change.
	BootIDFile string
	// AutoDir holds domain files defined and started at host boot
	// (xl's /etc/xen/auto); "" = none.
	AutoDir string
	// RestartLimit restarts (crashes or guest resets) within
	// RestartWindow stop the restarting: the domain is kept as crashed
	// (systemd's StartLimitBurst/IntervalSec). Zero: 5 in 10 minutes.
	RestartLimit  int
	RestartWindow time.Duration
}

// Manager owns the host's domains.
type Manager struct {
	o    Options
	mu   sync.Mutex // guards doms, admission and ID allocation
	doms map[string]*dom
	wg   sync.WaitGroup
	// nextID is the next domain ID; guarded by mu.
	nextID  int
	sampler sampler
	// migData holds incoming migrations waiting for their data
	// connection, by token; guarded by mu.
	migData map[string]*inMig
	// rebooted: the host restarted since the last daemon ran (set by
	// Recover); firstSinceBoot: this is the first daemon since the host
	// booted (autostart runs then).
	rebooted, firstSinceBoot bool
	// unaccounted are pids of QEMUs found running from run dirs no record
	// names (see sweep): admissions wait until they are gone.
	unaccounted []int
}

// New returns a Manager; call Recover before serving.
func New(o Options) *Manager {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Manager{o: o, doms: map[string]*dom{}, migData: map[string]*inMig{}}
}

func (m *Manager) runDir(name string) string { return filepath.Join(m.o.RunDir, "domains", name) }

// logDir holds a domain's console and QEMU logs: on disk, not in the
// run dir, and kept after the domain goes (why a guest died stays
// readable), until Options.LogRetention.
func (m *Manager) logDir(name string) string {
	d := filepath.Join(m.o.LogDir, name)
	os.MkdirAll(d, 0o700)
	return d
}

func (m *Manager) consoleLog(name string) string { return filepath.Join(m.logDir(name), "console.log") }

// validate checks everything about a spec that can be checked without
// changing the host: files exist and have the right type and the disk
// policy allows them, bridges exist.
func (m *Manager) validate(spec *api.DomainSpec) (string, error) {
	return m.validateExcept(spec, nil, false)
}

// validateExcept is validate, without the file checks of the disks in
// skip (by guest name): an incoming migration creates those itself; and
// with incoming, without testing the images' locks (on shared storage the
// source holds them until the handover).
func (m *Manager) validateExcept(spec *api.DomainSpec, skip map[string]bool, incoming bool) (string, error) {
	if err := config.Normalize(spec); err != nil {
		return "", api.Errorf(api.ErrInvalid, "%v", err)
	}
	accel := m.o.Accel.Name
	switch spec.Accel {
	case "":
	case "tcg":
		accel = "tcg"
	case "kvm":
		if m.o.Accel.Name != "kvm" {
			return "", api.Errorf(api.ErrInvalid, "accel = \"kvm\" asked but this host cannot use KVM: %s; remove accel= to use TCG", m.o.Accel.Reason)
		}
		accel = "kvm"
	}
	from := storage.Local
	if incoming {
		from = storage.FromPeer
	}
	check := func(what, p string, use storage.Use, format string) error {
		fi, err := os.Stat(p)
		if err != nil {
			return api.Errorf(api.ErrInvalid, "%s %s: %v; fix the path in the domain file", what, p, errors.Unwrap(err))
		}
		allowBlock := use != storage.UseBoot
		if !fi.Mode().IsRegular() && !(allowBlock && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0) {
			return api.Errorf(api.ErrInvalid, "%s %s is not a regular file%s", what, p, map[bool]string{true: " or block device", false: ""}[allowBlock])
		}
		if use == storage.UseBoot {
			return m.o.Policy.CheckFrom(from, use, p)
		}
		if !incoming {
			if err := m.ownUse(p, strings.TrimPrefix(what, "disk "), use); err != nil {
				return err
			}
		}
		if use == storage.UseDisk {
			if err := m.o.Chains.CheckWritable(context.Background(), what, p); err != nil {
				return err
			}
		}
		return m.o.Policy.CheckImage(from, use, p, format)
	}
	if spec.Kernel != "" {
		if err := check("kernel", spec.Kernel, storage.UseBoot, ""); err != nil {
			return "", err
		}
	}
	if spec.Ramdisk != "" {
		if err := check("ramdisk", spec.Ramdisk, storage.UseBoot, ""); err != nil {
			return "", err
		}
	}
	for _, d := range spec.Disks {
		if d.Target == "" && d.CDROM || skip[d.Guest] {
			continue
		}
		use := storage.UseDisk
		if d.Access == "ro" || d.CDROM {
			use = storage.UseDiskRO
		}
		if err := check("disk "+d.VDev, d.Target, use, d.Format); err != nil {
			return "", err
		}
	}
	if _, err := host.ParseCPUList(spec.CPUs, spec.MaxVCPUs, m.o.HostCPUs); err != nil {
		return "", api.Errorf(api.ErrInvalid, "cpus: %v", err)
	}
	for i, v := range spec.Vifs {
		if v.Bridge != "" {
			if err := network.CheckBridge(m.bridge(v.Bridge)); err != nil {
				return "", api.Errorf(api.ErrInvalid, "vif %d: %v", i, err)
			}
		}
	}
	return accel, nil
}

// launchSpec turns a domain into the engine's plain data.
func (m *Manager) launchSpec(spec api.DomainSpec, accel string, id int) engine.LaunchSpec {
	ls := engine.LaunchSpec{
		Name: spec.Name, UUID: spec.UUID, Accel: accel,
		MemoryMiB: spec.MaxMemMiB, VCPUs: spec.VCPUs, MaxVCPUs: spec.MaxVCPUs,
		Prealloc: true, Balloon: true, HotplugSlots: spec.HotplugSlots,
		Kernel: spec.Kernel, Initrd: spec.Ramdisk, Cmdline: spec.Cmdline,
		RunDir:  m.runDir(spec.Name),
		LogFile: filepath.Join(m.logDir(spec.Name), "qemu.log"),
		Boot:    spec.Boot,
	}
	switch {
	case spec.Localtime:
		ls.RTCBase = "localtime"
	case spec.RTCOffsetSec != 0:
		ls.RTCBase = time.Now().UTC().Add(time.Duration(spec.RTCOffsetSec) * time.Second).Format("2006-01-02T15:04:05")
	}
	// Our console is the first serial port; PV files say hvc0 (mapped by
	// config) or nothing.
	if spec.Kernel != "" && !strings.Contains(ls.Cmdline, "console=") {
		ls.Cmdline = strings.TrimSpace(ls.Cmdline + " console=ttyS0")
	}
	// Huge pages back guest RAM when the admin configured enough of them.
	if hp := host.ReadHugePages(); hp.Mount != "" && hp.FreeKiB >= int64(spec.MaxMemMiB)<<10 {
		ls.HugePages = hp.Mount
	}
	for _, d := range spec.Disks {
		ls.Disks = append(ls.Disks, engine.Disk{ID: d.Guest, Path: d.Target, Format: d.Format, ReadOnly: d.Access == "ro", CDROM: d.CDROM,
			IOPS: d.IOPS, BPS: d.BPS})
	}
	for i, v := range spec.Vifs {
		ls.NICs = append(ls.NICs, engine.NIC{ID: engine.NICID(i, v.Port), Tap: network.TapName(id, i), MAC: v.MAC, Model: v.Model, Port: v.Port})
	}
	return ls
}

// Create admits, starts and records a new domain.
func (m *Manager) Create(ctx context.Context, req api.CreateRequest) (any, error) {
	spec := req.Spec
	accel, err := m.validate(&spec)
	if err != nil {
		return nil, err
	}
	if (req.Persistent || spec.Persistent) && !req.DryRun {
		return m.createDefined(ctx, spec, req.Paused)
	}
	if req.DryRun {
		argv, err := m.o.Engine.Argv(m.launchSpec(spec, accel, 0))
		if err != nil {
			return nil, api.Errorf(api.ErrInvalid, "%v", err)
		}
		return api.DryRun{Spec: spec, Argv: argv, OverheadMiB: m.overhead(spec, accel)}, nil
	}
	return m.create(ctx, spec, accel, startOpts{paused: req.Paused})
}

// startOpts say how an incarnation starts.
type startOpts struct {
	paused bool
	// incoming, when set, loads saved state into the new VM before it runs.
	incoming func(context.Context, engine.Migratable) error
	// admitted, when set, runs once the ledger has admitted the domain and
	// before anything is made on the host; an error aborts the create. A
	// migration destination answers the source here, so admission refuses
	// before any copying and the stream overlaps QEMU's start.
	admitted func(r *revert.Reverter) error
	// tl, when set, notes the steps of the start (migration timeline).
	tl *timeline
	// kind is why it starts (create when unset).
	kind startKind
}

// create admits and starts a new domain (create and restore).
func (m *Manager) create(ctx context.Context, spec api.DomainSpec, accel string, so startOpts) (api.Domain, error) {
	r := revert.New()
	defer r.Fail()

	m.mu.Lock()
	if _, ok := m.doms[spec.Name]; ok {
		m.mu.Unlock()
		return api.Domain{}, api.Errorf(api.ErrConflict, "a domain named %q already exists: pick another name= or destroy it first", spec.Name)
	}
	if err := m.diskInUse(spec); err != nil {
		m.mu.Unlock()
		return api.Domain{}, err
	}
	if err := m.vifsInUse(spec.Name, spec.Vifs); err != nil {
		m.mu.Unlock()
		return api.Domain{}, err
	}
	if err := m.admit(spec, accel); err != nil {
		m.mu.Unlock()
		return api.Domain{}, err
	}
	r.Add(func() { m.o.Ledger.Release(spec.Name) })
	d := &dom{rec: record{Spec: spec, Accel: accel, State: api.StateDying}}
	d.snap.Store(&api.Domain{Spec: spec, State: api.StateDying, Flags: Flags(api.StateDying)})
	m.doms[spec.Name] = d
	r.Add(func() { m.mu.Lock(); delete(m.doms, spec.Name); m.mu.Unlock() })
	d.mu.Lock()
	m.mu.Unlock()
	defer d.mu.Unlock()
	if so.admitted != nil {
		if err := so.admitted(r); err != nil {
			return api.Domain{}, err
		}
	}

	so.tl.mark("admitted")
	if err := os.MkdirAll(m.runDir(spec.Name), 0o700); err != nil {
		return api.Domain{}, fmt.Errorf("creating runtime dir: %w", err)
	}
	r.Add(func() { os.RemoveAll(m.runDir(spec.Name)) })
	d.console = freshConsole(m.consoleLog(spec.Name), spec.Name)
	d.con.Store(d.console)
	r.Add(func() { d.console.Close() })
	if err := m.start(ctx, d, so); err != nil {
		return api.Domain{}, err
	}
	r.Success()
	return m.view(d), nil
}

// diskInUse refuses a disk another live domain here has open, unless both
// only read it. (QEMU's own image locking is off: see the engine.) Caller
// holds m.mu; other domains are read from their last view, never locked.
func (m *Manager) diskInUse(spec api.DomainSpec) error {
	for _, d := range spec.Disks {
		if d.Target == "" {
			continue
		}
		fi, err := os.Stat(d.Target)
		if err != nil {
			continue // validation reports it
		}
		ro := d.Access == "ro" || d.CDROM
		for name, v := range m.views(true) {
			for _, x := range v.Spec.Disks {
				if ro && (x.Access == "ro" || x.CDROM) {
					continue
				}
				if sameFile(fi, x.Target) {
					return api.Errorf(api.ErrConflict, "disk %s: %s is already in use by domain %s (%s); a disk can be shared only read-only: add ,r to both or give this domain its own copy",
						d.VDev, d.Target, name, x.VDev)
				}
			}
		}
	}
	return nil
}

// ownUse says which of this host's domains already uses an image in a way
// use conflicts with (a clearer answer than the image locks, which only
// say "another process"; create checks again under the lock).
func (m *Manager) ownUse(path, vdev string, use storage.Use) error {
	if use == storage.UseBoot {
		return nil
	}
	d := api.Disk{Target: path, VDev: vdev, Access: "rw"}
	if use == storage.UseDiskRO {
		d.Access = "ro"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.diskInUse(api.DomainSpec{Disks: []api.Disk{d}})
}

// views are the domains' last views by name (only live ones: not shut
// down or crashed, when live). Caller holds m.mu; no domain is locked.
func (m *Manager) views(live bool) map[string]*api.Domain {
	out := map[string]*api.Domain{}
	for name, d := range m.doms {
		v := d.snap.Load()
		if v == nil || live && (v.State == api.StateShutdown || v.State == api.StateCrashed) {
			continue
		}
		out[name] = v
	}
	return out
}

// sameFile reports whether path names the file fi describes.
func sameFile(fi os.FileInfo, path string) bool {
	if path == "" {
		return false
	}
	xi, err := os.Stat(path)
	return err == nil && os.SameFile(fi, xi)
}

// Networks is what the domain manager needs from the owner of networks.
type Networks interface {
	// Bridge maps a vif's bridge= to the bridge to use: a managed
	// network's bridge, or the name itself.
	Bridge(name string) string
	// Plug registers a vif whose tap was just made (its address on a NAT
	// network, its anti-spoofing filter); Unplug forgets it once the tap
	// is gone.
	Plug(ctx context.Context, domain, tap string, v api.Vif) error
	Unplug(tap string)
	// Addresses are what a plugged tap may send from (ip= or its lease).
	Addresses(tap string) []string
}

// bridge resolves a vif's bridge= (see Networks.Bridge).
func (m *Manager) bridge(name string) string {
	if m.o.Networks == nil || name == "" {
		return name
	}
	return m.o.Networks.Bridge(name)
}

// plugTap makes vif's tap on its bridge with its rate limit and filter;
// on error nothing of it is left.
func (m *Manager) plugTap(ctx context.Context, domain, tap string, v api.Vif) error {
	if err := network.CreateTap(tap, m.bridge(v.Bridge)); err != nil {
		return err
	}
	if v.RateBytes > 0 {
		if err := network.SetRate(tap, v.RateBytes, v.RateIntervalUS); err != nil {
			network.DeleteTap(tap)
			return fmt.Errorf("rate=%s: %w", v.Rate, err)
		}
	}
	if m.o.Networks != nil {
		if err := m.o.Networks.Plug(ctx, domain, tap, v); err != nil {
			network.DeleteTap(tap)
			return err
		}
	}
	return nil
}

// unplugTap removes a tap plugTap made.
func (m *Manager) unplugTap(tap string) {
	if err := network.DeleteTap(tap); err != nil {
		m.o.Log.Error("removing tap", "tap", tap, "err", err)
	}
	if m.o.Networks != nil {
		m.o.Networks.Unplug(tap)
	}
}

// BridgeUsers names the live domains with a vif on bridge.
func (m *Manager) BridgeUsers(bridge string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for name, v := range m.views(true) {
		for _, x := range v.Spec.Vifs {
			if m.bridge(x.Bridge) == bridge {
				out = append(out, name)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// DiskUsers names the domains (in any state) whose disks include path.
func (m *Manager) DiskUsers(path string) []string {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for name, v := range m.views(false) {
		for _, x := range v.Spec.Disks {
			if sameFile(fi, x.Target) {
				out = append(out, name)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// admit checks the ledger and the host's actually free memory. Caller
// holds m.mu.
// The ledger holds maxmem (the balloon may grow back to it at any time) and
// maxvcpus, so whatever mem-set or vcpu changes later ask is already paid.
func (m *Manager) admit(spec api.DomainSpec, accel string) error {
	if err := m.unaccountedErr(); err != nil {
		return err
	}
	over := m.overhead(spec, accel)
	memMiB := spec.MaxMemMiB
	if hm, err := host.ReadMemory(); err == nil && memMiB+over > hm.AvailableMiB {
		return api.Errorf(api.ErrInsufficient, "memory: %s asks %d MiB (%d guest + %d QEMU overhead) but the host has only %d MiB available; lower memory/maxmem",
			spec.Name, memMiB+over, memMiB, over, hm.AvailableMiB)
	}
	return m.o.Ledger.Reserve(spec.Name, memMiB, over, spec.MaxVCPUs)
}

// allocUID picks the QEMU uid for d's next incarnation: the lowest in the
// range that no other domain's live QEMU runs as. A uid is free again
// only once its QEMU has exited (exit handling runs after the process is
// gone), so no two QEMUs ever share one.
func (m *Manager) allocUID(d *dom) (int, error) {
	r := m.o.QEMUIDs
	if r.Count == 0 {
		return 0, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	used := map[int]bool{}
	for _, x := range m.doms {
		if x != d {
			if v := x.uid.Load(); v != 0 {
				used[int(v)] = true
			}
		}
	}
	for u := r.Base; u < r.Base+r.Count; u++ {
		if !used[u] {
			d.uid.Store(int64(u))
			return u, nil
		}
	}
	return 0, api.Errorf(api.ErrInsufficient, "every QEMU uid in %d-%d is taken by a running domain: widen serve --qemu-ids", r.Base, r.Base+r.Count-1)
}

// allocID takes the next domain ID (never 0: that is the host, as in Xen).
// The counter is persisted with the domain record (save), so a create that
// fails leaves the store untouched.
func (m *Manager) allocID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.nextID < 1 {
		m.nextID = 1
	}
	id := m.nextID
	m.nextID++
	return id
}

// start launches one incarnation of d. Caller holds d.mu. On error
// everything this call made is undone, the record included.
//
// Every step that changes the host is preceded by a store write saying
// so: the intent (ID, taps) before anything is made, the QEMU (pid,
// sockets) before its vCPUs run, the end of the start after. A daemon
// killed at any point finds in the store what to finish or undo.
func (m *Manager) start(ctx context.Context, d *dom, so startOpts) error {
	paused := so.paused
	if so.kind == "" {
		so.kind = kindCreate
	}
	r := revert.New()
	defer r.Fail()
	id := m.allocID()
	spec := d.rec.Spec
	ls := m.launchSpec(spec, d.rec.Accel, id)
	uid, err := m.allocUID(d)
	if err != nil {
		return err
	}
	r.Add(func() { d.uid.Store(0) })
	if uid != 0 {
		ls.RunAs = fmt.Sprintf("%d:%d", uid, uid)
	}
	if err := os.MkdirAll(ls.RunDir, 0o700); err != nil {
		return fmt.Errorf("creating runtime dir: %w", err)
	}
	var planned []string
	for _, n := range ls.NICs {
		planned = append(planned, n.Tap)
	}
	prev := d.rec
	_, getErr := m.o.Store.Get(ctx, keyDomains+spec.Name)
	hadRecord := getErr == nil
	d.rec.Starting = &startIntent{Kind: so.kind, ID: id, Taps: planned, Resume: !paused}
	d.rec.Ending, d.rec.Engine, d.rec.Taps = nil, nil, nil
	if err := m.save(ctx, d); err != nil {
		d.rec = prev
		return err
	}
	r.Add(func() {
		// Withdrawn: the record is what it was (none for a new domain),
		// and so is the ID counter unless another start took one since:
		// a failed create leaves the store as it found it.
		d.rec = prev
		m.mu.Lock()
		if m.nextID == id+1 {
			m.nextID = id
		}
		m.mu.Unlock()
		if hadRecord {
			m.save(context.Background(), d)
		} else {
			m.deleteRecordSaveID(spec.Name)
		}
	})
	crashpoint.Hit("start:intent")
	var taps []string
	for i, n := range ls.NICs {
		if err := m.plugTap(ctx, spec.Name, n.Tap, spec.Vifs[i]); err != nil {
			return api.Errorf(api.ErrCode(err, api.ErrInvalid), "vif %d: %v", i, err)
		}
		tap := n.Tap
		taps = append(taps, tap)
		r.Add(func() { m.unplugTap(tap) })
	}
	ls.Incoming = so.incoming != nil
	if cg := m.o.Cgroups; cg != nil {
		if err := cg.Create(spec.Name, m.limits(spec, d.rec.Accel)); err != nil {
			return fmt.Errorf("creating the domain's cgroup: %w", err)
		}
		r.Add(func() { m.removeCgroup(spec.Name) })
		ls.CgroupProcs = cg.ProcsFiles(spec.Name)
	}
	so.tl.mark("host-ready")
	crashpoint.Hit("start:host-ready")
	inst, err := m.o.Engine.Start(ctx, ls)
	if err != nil {
		if oom := m.oomReason(d); oom != "" {
			m.o.Log.Error("domain killed at start: out of memory", "name", spec.Name, "reason", oom)
			return api.Errorf(api.ErrInsufficient, "starting %s: %s", spec.Name, oom)
		}
		return fmt.Errorf("starting %s: %w", spec.Name, err)
	}
	r.Add(func() { inst.Kill(); <-inst.Wait() })
	so.tl.mark("qemu-up")
	so.tl.sched(inst.PID())
	crashpoint.Hit("start:qemu-up")
	if err := pinVCPUs(inst.VCPUThreads(), spec.CPUs, m.o.HostCPUs); err != nil {
		return api.Errorf(api.ErrInvalid, "pinning vCPUs: %v", err)
	}
	if spec.MemoryMiB < spec.MaxMemMiB {
		// Boot "pre-ballooned" as xl does: RAM is maxmem, the guest is
		// asked to give back the difference.
		if err := inst.SetBalloon(ctx, int64(spec.MemoryMiB)<<20); err != nil {
			return fmt.Errorf("setting the balloon target: %w", err)
		}
	}
	if err := d.console.Connect(inst.SerialPath()); err != nil {
		return fmt.Errorf("attaching console: %w", err)
	}
	so.tl.mark("console")
	if so.incoming != nil {
		mig, ok := inst.(engine.Migratable)
		if !ok {
			return errNoMigrate
		}
		if err := so.incoming(ctx, mig); err != nil {
			return fmt.Errorf("loading the saved state: %w", err)
		}
	}
	d.rec.ID = id
	d.rec.Taps = taps
	d.rec.StartedAt = time.Now()
	d.rec.Engine = inst.State()
	d.rec.State = api.StateRunning
	if paused {
		d.rec.State = api.StatePaused
	}
	d.rec.Generation++
	d.rec.BootMaxMemMiB = spec.MaxMemMiB
	d.rec.QEMUUID = uid
	// Recorded before the vCPUs start, so a daemon crash from here on
	// finds (and re-attaches) the QEMU instead of leaking it.
	if err := m.save(ctx, d); err != nil {
		return err
	}
	so.tl.mark("recorded")
	crashpoint.Hit("start:recorded")
	if so.incoming != nil {
		// Started unlocked while the source held the images; the source
		// let go of them before the handover. Nobody else may have them:
		// a guest never runs on an image another process writes.
		if err := m.takeLocks(inst, spec); err != nil {
			return fmt.Errorf("taking the images' locks: %w", err)
		}
	}
	if !paused {
		if err := inst.Resume(ctx); err != nil {
			return fmt.Errorf("starting vCPUs: %w", err)
		}
		so.tl.mark("running")
	}
	crashpoint.Hit("start:running")
	d.rec.Starting = nil
	if err := m.save(ctx, d); err != nil {
		// It runs and the store says so (Engine); the intent left in the
		// store only makes a later daemon check it is resumed.
		m.o.Log.Error("marking a start done", "name", spec.Name, "err", err)
	}
	d.setInst(inst)
	d.intent = ""
	d.hostStop.Store(false)
	d.ended = make(chan struct{})
	r.Success()
	m.watch(d, inst, d.ended)
	m.o.Log.Info("domain started", "name", spec.Name, "id", id, "pid", inst.PID(), "accel", d.rec.Accel)
	return nil
}

func (m *Manager) save(ctx context.Context, d *dom) error {
	b, err := json.Marshal(d.rec)
	if err != nil {
		return err
	}
	m.mu.Lock()
	next := m.nextID
	m.mu.Unlock()
	err = m.o.Store.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put(keyNextID, []byte(strconv.Itoa(next))); err != nil {
			return err
		}
		return tx.Put(keyDomains+d.rec.Spec.Name, b)
	})
	if err != nil {
		return fmt.Errorf("saving domain state: %w", err)
	}
	m.saveRuntime(d.rec.Spec.Name, b)
	return nil
}

// saveRuntime keeps a copy of the record in the domain's run dir (when it
// has one): the runtime facts next to the QEMU they describe, so a daemon
// whose store is older than its guests (restored from a backup) re-adopts
// them instead of taking them for strangers.
func (m *Manager) saveRuntime(name string, b []byte) {
	dir := m.runDir(name)
	if _, err := os.Stat(dir); err != nil {
		return
	}
	tmp := filepath.Join(dir, "record.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err == nil {
		err = os.Rename(tmp, filepath.Join(dir, "record.json"))
		if err != nil {
			m.o.Log.Warn("keeping the runtime record", "name", name, "err", err)
		}
	}
}

// runtimeRecord reads the copy saveRuntime keeps.
func (m *Manager) runtimeRecord(name string) (record, bool) {
	var rec record
	b, err := os.ReadFile(filepath.Join(m.runDir(name), "record.json"))
	if err != nil || json.Unmarshal(b, &rec) != nil || rec.Spec.Name != name {
		return record{}, false
	}
	return rec, true
}

// deleteRecordSaveID deletes a record and saves the ID counter in one
// transaction.
func (m *Manager) deleteRecordSaveID(name string) {
	m.mu.Lock()
	next := m.nextID
	m.mu.Unlock()
	err := m.o.Store.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.Put(keyNextID, []byte(strconv.Itoa(next))); err != nil {
			return err
		}
		return tx.Delete(keyDomains + name)
	})
	if err != nil {
		m.o.Log.Error("deleting domain record", "name", name, "err", err)
	}
}

func (m *Manager) deleteRecord(name string) {
	if err := store.Delete(context.Background(), m.o.Store, keyDomains+name); err != nil {
		m.o.Log.Error("deleting domain record", "name", name, "err", err)
	}
}

// watch waits for an incarnation to end and applies the domain's action.
func (m *Manager) watch(d *dom, inst engine.Instance, ended chan struct{}) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ex := <-inst.Wait()
		m.handleExit(d, inst, ex)
		close(ended)
	}()
}

func (m *Manager) handleExit(d *dom, inst engine.Instance, ex engine.Exit) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inst != inst {
		return // superseded
	}
	name := d.rec.Spec.Name
	for _, t := range d.rec.Taps {
		m.unplugTap(t)
	}
	d.rec.Taps = nil
	d.setInst(nil)
	d.uid.Store(0) // its QEMU is gone: the uid may serve another domain
	d.rec.Engine = nil
	for _, f := range []string{"qmp.sock", "serial.sock", "qemu.pid"} {
		os.Remove(filepath.Join(m.runDir(name), f))
	}
	oom := m.oomReason(d)
	m.removeCgroup(name)
	action, state := api.ActionDestroy, api.StateShutdown
	switch {
	case d.intent == "destroy" || d.destroying.Load():
	case ex.Reason == engine.ExitPoweroff && d.intent == "reboot":
		// `ringfence reboot` pressed the button for a restart.
		action = d.rec.Spec.OnReboot
	case ex.Reason == engine.ExitPoweroff:
		action = d.rec.Spec.OnPoweroff
	case ex.Reason == engine.ExitReboot:
		action = d.rec.Spec.OnReboot
	default: // crash, or killed by someone else
		action, state = d.rec.Spec.OnCrash, api.StateCrashed
	}
	d.rec.LastReason = ex.Reason
	if ex.Detail != "" {
		d.rec.LastReason += ": " + ex.Detail
	}
	if d.intent == "destroy" || d.destroying.Load() {
		d.rec.LastReason = "stopped: destroyed"
	}
	if oom != "" && d.intent != "destroy" && !d.destroying.Load() {
		d.rec.LastReason = oom
		m.o.Log.Error("domain killed: out of memory", "name", name, "id", d.rec.ID, "reason", oom)
	}
	if d.hostStop.Load() && oom == "" {
		action, state = api.ActionPreserve, api.StateShutdown
		d.rec.LastReason = reasonHostShutdown
		if d.destroying.Load() {
			d.rec.LastReason += " (destroyed: it ignored the power button)"
		}
	}
	// Only what the guest causes counts towards the brake: a crash, an OOM
	// kill, its own reset; not an admin's reboot or destroy.
	guestCaused := d.intent != "destroy" && !d.destroying.Load() && !d.hostStop.Load() &&
		(ex.Reason == engine.ExitCrash || ex.Reason == engine.ExitReboot && ex.Detail != "host-qmp-system-reset")
	if guestCaused && restarts(action) && m.braked(d) {
		action, state = api.ActionPreserve, api.StateCrashed
		m.o.Log.Error("domain stopped restarting", "name", name, "reason", d.rec.LastReason)
	}
	m.o.Log.Info("domain ended", "name", name, "id", d.rec.ID, "reason", ex.Reason, "detail", ex.Detail, "action", action)
	// Noted before it is carried out: a daemon killed from here on
	// carries out this action, not on_crash (its QEMU is simply gone).
	d.rec.Ending = &endIntent{Action: action, State: state}
	if err := m.save(context.Background(), d); err != nil {
		m.o.Log.Error("recording how a domain ended", "name", name, "err", err)
	}
	crashpoint.Hit("exit:noted")
	m.applyAction(d, action, state)
}

// restarts reports whether an on_* action starts the domain again.
func restarts(action string) bool {
	switch action {
	case api.ActionRestart, api.ActionRenameRestart, api.ActionCoredumpRestart, api.ActionSoftReset:
		return true
	}
	return false
}

// braked notes a guest-caused restart and reports whether it is one too
// many: RestartLimit of them within RestartWindow. Then the domain stays
// stopped, with why and its console's last lines. Caller holds d.mu.
func (m *Manager) braked(d *dom) bool {
	limit, window := m.o.RestartLimit, m.o.RestartWindow
	if limit <= 0 {
		limit = 5
	}
	if window <= 0 {
		window = 10 * time.Minute
	}
	now := time.Now()
	kept := d.rec.Restarts[:0]
	for _, t := range d.rec.Restarts {
		if now.Sub(t) < window {
			kept = append(kept, t)
		}
	}
	d.rec.Restarts = append(kept, now)
	if len(d.rec.Restarts) < limit {
		return false
	}
	span := now.Sub(d.rec.Restarts[0]).Round(time.Second)
	d.rec.LastReason = fmt.Sprintf("stopped restarting after %d restarts in %s (the limit is %d in %s); the last end: %s. "+
		"It stays stopped: see `ringfence console %s` (its output is kept), fix the cause, then `ringfence start %s`",
		len(d.rec.Restarts), span, limit, window, d.rec.LastReason, d.rec.Spec.Name, d.rec.Spec.Name)
	d.rec.Restarts = nil
	if d.console != nil {
		d.rec.LastConsole = lastLines(d.console.History(), 20)
	}
	return true
}

// lastLines are the last n non-empty lines of a console's output.
func lastLines(b []byte, n int) []string {
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// oomReason says, when the kernel killed the domain's QEMU at its memory
// limit, what happened and what to raise. Read before the cgroup goes.
func (m *Manager) oomReason(d *dom) string {
	if m.o.Cgroups == nil {
		return ""
	}
	ev := m.o.Cgroups.MemoryEvents(d.rec.Spec.Name)
	if ev.OOMKills == 0 {
		return ""
	}
	ram := d.rec.BootMaxMemMiB
	if ram == 0 {
		ram = d.rec.Spec.MaxMemMiB
	}
	return fmt.Sprintf("killed: out of memory (limit %d MiB, peak %d MiB): its QEMU needed more than the domain's guarantee (%d MiB guest RAM + %d MiB QEMU overhead); "+
		"raise the overhead (serve --qemu-overhead) or, if the guest itself ran out, its memory",
		ev.LimitB>>20, ev.PeakB>>20, ram, ev.LimitB>>20-int64(ram))
}

// applyAction does on_poweroff/on_reboot/on_crash. Caller holds d.mu and
// the domain has no running instance.
func (m *Manager) applyAction(d *dom, action, state string) {
	ctx := context.Background()
	name := d.rec.Spec.Name
	switch action { // Xen's variants we accept act as their plain action
	case api.ActionCoredumpDestroy:
		action = api.ActionDestroy
	case api.ActionCoredumpRestart, api.ActionSoftReset:
		action = api.ActionRestart
	}
	switch action {
	case api.ActionRestart:
		crashpoint.Hit("restart:before-start")
		if err := m.start(ctx, d, startOpts{kind: kindRestart}); err == nil {
			return
		} else {
			m.o.Log.Error("restart failed; keeping the domain as crashed", "name", name, "err", err)
			d.rec.LastReason = "restart failed: " + err.Error()
		}
		state = api.StateCrashed
		fallthrough
	case api.ActionPreserve:
		if d.def != nil {
			m.keepStopped(d, state)
			return
		}
		d.rec.State, d.rec.Ending = state, nil
		m.o.Ledger.Release(name)
		if err := m.save(ctx, d); err != nil {
			m.o.Log.Error("saving preserved domain", "name", name, "err", err)
		}
	case api.ActionRenameRestart:
		m.mu.Lock()
		old := m.freeIncarnationName(name, d.rec.Generation)
		kept := &dom{rec: d.rec}
		kept.rec.State = state
		kept.rec.Spec.Name = old
		os.MkdirAll(m.runDir(old), 0o700)
		os.WriteFile(m.consoleLog(old), d.console.History(), 0o600)
		kept.console = newConsole(m.consoleLog(old))
		kept.con.Store(kept.console)
		m.doms[old] = kept
		m.mu.Unlock()
		kept.rec.Ending = nil
		m.save(ctx, kept)
		if err := m.start(ctx, d, startOpts{kind: kindRestart}); err != nil {
			m.o.Log.Error("rename-restart failed", "name", name, "err", err)
			m.endLocked(d, api.StateCrashed)
		}
	default:
		m.endLocked(d, state)
	}
}

// freeIncarnationName is the name rename-restart keeps an old incarnation
// under: NAME--incarnation-N, with N raised past names already taken (an
// existing domain is never overwritten), shortened to the name rule's
// length. Caller holds m.mu.
func (m *Manager) freeIncarnationName(name string, gen int) string {
	for n := gen; ; n++ {
		suffix := fmt.Sprintf("--incarnation-%d", n)
		base := name
		if len(base)+len(suffix) > names.MaxLen {
			base = base[:names.MaxLen-len(suffix)]
		}
		cand := base + suffix
		if _, taken := m.doms[cand]; !taken {
			return cand
		}
	}
}

// destroyLocked removes a domain that has no running instance.
func (m *Manager) destroyLocked(d *dom) {
	name := d.rec.Spec.Name
	m.deleteRecord(name)
	m.o.Ledger.Release(name)
	if d.console != nil {
		d.console.Close()
	}
	m.removeRunDir(name)
	d.rec.State = api.StateDying
	m.mu.Lock()
	if m.doms[name] == d {
		delete(m.doms, name)
	}
	m.mu.Unlock()
}

// removeRunDir removes a domain's run dir and cgroups (its QEMU is gone).
func (m *Manager) removeRunDir(name string) {
	os.RemoveAll(m.runDir(name))
	m.removeCgroup(name)
}

// removeCgroup removes a domain's cgroups once its processes are gone
// (idempotent); one that cannot be removed is logged, never forgotten
// silently.
func (m *Manager) removeCgroup(name string) {
	if m.o.Cgroups == nil {
		return
	}
	if err := m.o.Cgroups.Remove(name); err != nil {
		m.o.Log.Error("a domain's cgroup outlived its QEMU", "name", name, "err", err)
	}
}

func (m *Manager) get(name string) (*dom, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.doms[name]
	if !ok {
		// xl accepts a domid where it accepts a name.
		if id, err := strconv.Atoi(name); err == nil {
			for _, x := range m.doms {
				if x.rec.ID == id && x.rec.State != api.StateShutdown && x.rec.State != api.StateCrashed {
					return x, nil
				}
			}
		}
		return nil, api.Errorf(api.ErrNotFound, "no domain named %q (see `ringfence list`)", name)
	}
	return d, nil
}

// Destroy ends a domain at once, whatever its on_* settings.
func (m *Manager) Destroy(ctx context.Context, name string) error {
	d, err := m.get(name)
	if err != nil {
		return err
	}
	// Kill first, without waiting for the domain's lock: an operation
	// stuck on a stopped or hung QEMU holds it (until its QMP deadline),
	// and destroy must get through. The exit is handled as a destroy.
	d.destroying.Store(true)
	if li := d.live.Load(); li != nil {
		if err := li.Kill(); err != nil {
			d.destroying.Store(false)
			return fmt.Errorf("killing QEMU of %s: %w", name, err)
		}
	}
	d.mu.Lock()
	if d.inst == nil && len(d.stray) > 0 {
		defer d.mu.Unlock()
		d.destroying.Store(false)
		m.killStray(d)
		d.rec.LastReason = "stopped: destroyed"
		m.endLocked(d, api.StateShutdown)
		return nil
	}
	if d.inst == nil {
		defer d.mu.Unlock()
		d.destroying.Store(false)
		if d.def != nil {
			return api.Errorf(api.ErrConflict, "%s is not running (it is defined: `ringfence undefine %s` removes it, `ringfence start %s` starts it)", name, name, name)
		}
		m.destroyLocked(d)
		return nil
	}
	d.intent = "destroy"
	inst, ended := d.inst, d.ended
	d.mu.Unlock()
	if err := inst.Kill(); err != nil {
		return fmt.Errorf("killing QEMU of %s: %w", name, err)
	}
	select {
	case <-ended:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Start starts a domain that is kept stopped (preserved after a shutdown
// or crash, or stopped by the crash-loop brake): admitted again like a
// create, with its console history kept.
func (m *Manager) Start(ctx context.Context, name string, paused bool) (api.Domain, error) {
	d, err := m.get(name)
	if err != nil {
		return api.Domain{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.def != nil && d.def.Saved != "" && d.inst == nil {
		// Saved at a host shutdown and not yet restored: it resumes
		// where it was rather than booting afresh.
		path := d.def.Saved
		if _, err := os.Stat(path); err == nil {
			if err := m.restoreInto(ctx, d, path); err != nil {
				return api.Domain{}, fmt.Errorf("restoring %s from %s (saved at host shutdown): %w", name, path, err)
			}
			os.Remove(path)
		}
		next := *d.def
		next.Saved = ""
		if err := m.saveDef(ctx, name, &next); err == nil {
			*d.def = next
		}
		if d.inst != nil {
			return m.view(d), nil
		}
	}
	return m.startKept(ctx, d, startOpts{paused: paused})
}

// startKept starts a kept (stopped) domain: admitted like a create, from
// its definition when it has one. Caller holds d.mu.
func (m *Manager) startKept(ctx context.Context, d *dom, so startOpts) (api.Domain, error) {
	name := d.rec.Spec.Name
	if d.inst != nil {
		return api.Domain{}, api.Errorf(api.ErrConflict, "%s is already %s", name, d.rec.State)
	}
	if so.kind == "" {
		so.kind = kindStart
	}
	if len(d.stray) > 0 {
		return api.Domain{}, api.Errorf(api.ErrConflict, "%s still has a QEMU that runs unattached (pid %v): `ringfence destroy %s` first", name, d.stray, name)
	}
	if d.def != nil {
		// A defined domain starts from its definition (with a config
		// update made while it ran).
		if d.def.Pending != nil {
			next := *d.def
			next.Spec, next.Pending = *d.def.Pending, nil
			if err := m.saveDef(ctx, name, &next); err != nil {
				return api.Domain{}, err
			}
			*d.def = next
		}
		d.rec.Spec = d.def.Spec
	}
	spec := d.rec.Spec
	accel, err := m.validate(&spec)
	if err != nil {
		return api.Domain{}, err
	}
	m.mu.Lock()
	if err := m.diskInUse(spec); err != nil {
		m.mu.Unlock()
		return api.Domain{}, err
	}
	if err := m.vifsInUse(name, spec.Vifs); err != nil {
		m.mu.Unlock()
		return api.Domain{}, err
	}
	if err := m.admit(spec, accel); err != nil {
		m.mu.Unlock()
		return api.Domain{}, err
	}
	m.mu.Unlock()
	d.rec.Spec, d.rec.Accel = spec, accel
	if err := os.MkdirAll(m.runDir(name), 0o700); err != nil {
		m.o.Ledger.Release(name)
		return api.Domain{}, fmt.Errorf("creating runtime dir: %w", err)
	}
	if d.console == nil {
		d.console = newConsole(m.consoleLog(name))
		d.con.Store(d.console)
	}
	if err := m.start(ctx, d, so); err != nil {
		m.o.Ledger.Release(name)
		return api.Domain{}, err
	}
	d.rec.LastConsole, d.rec.Restarts = nil, nil
	m.save(ctx, d)
	m.o.Log.Info("domain started again", "name", name)
	return m.view(d), nil
}

// running returns the live instance or a conflict error.
func (m *Manager) running(name string) (*dom, engine.Instance, error) {
	d, err := m.get(name)
	if err != nil {
		return nil, nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inst == nil {
		return nil, nil, api.Errorf(api.ErrConflict, "%s is %s, not running: `ringfence destroy %s` removes it", name, d.rec.State, name)
	}
	return d, d.inst, nil
}

// Shutdown presses the ACPI power button; with Wait it waits for the
// guest to go, and with Force it destroys it after the timeout.
func (m *Manager) Shutdown(ctx context.Context, name string, req api.ShutdownRequest) error {
	d, inst, err := m.running(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	ended := d.ended
	d.mu.Unlock()
	timeout, err := pressAndWait(ctx, name, inst, ended, req)
	if err != nil || timeout == 0 {
		return err
	}
	if req.Force {
		m.o.Log.Info("guest ignored the power button; destroying", "name", name)
		return m.Destroy(ctx, name)
	}
	return api.Errorf(api.ErrUnavailable, "%s did not shut down within %s: it may ignore ACPI; use --force or `ringfence destroy %s`", name, timeout, name)
}

// pressAndWait presses the ACPI power button and, with Wait or Force,
// waits for the incarnation to end. It returns the timeout when the guest
// ignored the button that long (0 when it ended, or no wait was asked).
func pressAndWait(ctx context.Context, name string, inst engine.Instance, ended chan struct{}, req api.ShutdownRequest) (time.Duration, error) {
	if err := inst.Powerdown(ctx); err != nil {
		return 0, fmt.Errorf("sending ACPI power button to %s: %w", name, err)
	}
	if !req.Wait && !req.Force {
		return 0, nil
	}
	timeout := time.Duration(req.TimeoutSec) * time.Second
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	deadline := time.After(timeout)
	// A press that arrives before the guest listens for it (early boot) is
	// lost, so press again every few seconds while waiting.
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ended:
			return 0, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
			inst.Powerdown(ctx)
		case <-deadline:
			return timeout, nil
		}
	}
}

// Reboot asks the guest to restart, as xl, virsh and incus mean it: the
// ACPI power button, and when the guest has shut down it is started again
// as on_reboot says (there is no ACPI reboot button; libvirt does the
// same). With Wait it returns once the new incarnation runs; Force resets
// it hard if it ignores the button for the timeout.
func (m *Manager) Reboot(ctx context.Context, name string, req api.ShutdownRequest) error {
	d, inst, err := m.running(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	id, ended, onReboot := d.rec.ID, d.ended, d.rec.Spec.OnReboot
	d.intent = "reboot"
	d.mu.Unlock()
	timeout, err := pressAndWait(ctx, name, inst, ended, req)
	switch {
	case err != nil:
		return err
	case timeout != 0 && req.Force:
		m.o.Log.Info("guest ignored the power button; resetting", "name", name)
		return m.Reset(ctx, name)
	case timeout != 0:
		return api.Errorf(api.ErrUnavailable, "%s did not shut down within %s to reboot: it may ignore ACPI; `ringfence reset %s` restarts it hard", name, timeout, name)
	case !req.Wait:
		return nil
	}
	if v, err := m.Get(name); err == nil && v.ID != id && v.PID != 0 {
		return nil
	}
	return api.Errorf(api.ErrConflict, "%s shut down but was not started again (its on_reboot is %q, or the restart failed: see `ringfence list --all`)", name, onReboot)
}

// Reset is the hard reset (system_reset): the domain then follows
// on_reboot.
func (m *Manager) Reset(ctx context.Context, name string) error {
	_, inst, err := m.running(name)
	if err != nil {
		return err
	}
	return inst.Reset(ctx)
}

// Pause stops the vCPUs.
func (m *Manager) Pause(ctx context.Context, name string) error {
	return m.setPaused(ctx, name, true)
}

// Unpause resumes the vCPUs.
func (m *Manager) Unpause(ctx context.Context, name string) error {
	return m.setPaused(ctx, name, false)
}

func (m *Manager) setPaused(ctx context.Context, name string, pause bool) error {
	d, err := m.get(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inst == nil {
		return api.Errorf(api.ErrConflict, "%s is %s, not running", name, d.rec.State)
	}
	state := api.StatePaused
	if pause {
		err = d.inst.Pause(ctx)
	} else {
		// Its images must be its own again (after a handover that was never
		// confirmed, the destination may hold them: then it runs there).
		if lerr := m.takeLocks(d.inst, d.rec.Spec); lerr != nil {
			return api.Errorf(api.ErrConflict, "%s cannot run here: %v; if it runs on a migration's destination, destroy this copy", name, lerr)
		}
		err = d.inst.Resume(ctx)
		state = api.StateRunning
	}
	if err != nil {
		return err // the state changes only once QEMU has confirmed it
	}
	d.rec.State = state
	return m.save(ctx, d)
}

// Console returns the console of a domain.
func (m *Manager) Console(name string) (*Console, error) {
	d, err := m.get(name)
	if err != nil {
		return nil, err
	}
	if c := d.con.Load(); c != nil {
		return c, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.console, nil
}

// Get returns one domain, waiting for an operation on it to finish so the
// answer is exact (List does not wait).
func (m *Manager) Get(name string) (api.Domain, error) {
	d, err := m.get(name)
	if err != nil {
		return api.Domain{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return m.view(d), nil
}

// List returns the domains, by ID: those that run or are kept (xl's
// list), and with all the defined ones that are stopped too.
func (m *Manager) List(all bool) []api.Domain {
	m.mu.Lock()
	ds := make([]*dom, 0, len(m.doms))
	for _, d := range m.doms {
		if !all && d.def != nil && d.live.Load() == nil {
			if v := d.snap.Load(); v == nil || v.State == api.StateShutdown || v.State == api.StateCrashed {
				continue
			}
		}
		ds = append(ds, d)
	}
	m.mu.Unlock()
	out := make([]api.Domain, 0, len(ds))
	for _, d := range ds {
		out = append(out, m.current(d))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// current renders d, or its last view while a long operation holds it.
func (m *Manager) current(d *dom) api.Domain {
	if d.mu.TryLock() {
		defer d.mu.Unlock()
		return m.view(d)
	}
	if v := d.snap.Load(); v != nil {
		return *v
	}
	return api.Domain{}
}

// view renders a domain for the API and keeps it as the snapshot. Caller
// holds d.mu.
func (m *Manager) view(d *dom) api.Domain {
	v := m.render(d)
	d.snap.Store(&v)
	return v
}

func (m *Manager) render(d *dom) api.Domain {
	v := api.Domain{Spec: d.rec.Spec, ID: d.rec.ID, State: d.rec.State, Taps: d.rec.Taps, LastReason: d.rec.LastReason, LastConsole: d.rec.LastConsole,
		Defined: d.def != nil}
	if d.def != nil && d.def.Autostart.On {
		a := d.def.Autostart
		v.Autostart = &a
	}
	if d.inst != nil {
		v.PID = d.inst.PID()
		v.StartedAt = d.rec.StartedAt
		v.UptimeSec = time.Since(d.rec.StartedAt).Seconds()
		busy := false
		for _, tid := range d.inst.VCPUThreads() {
			if st, err := procfs.ReadStat(v.PID, tid); err == nil {
				v.CPUTime += st.CPUSeconds()
				busy = busy || st.State == 'R'
			}
		}
		if v.State == api.StateRunning && !busy {
			v.State = api.StateBlocked
		}
	}
	v.Flags = Flags(v.State)
	return v
}

// Flags renders xl's six state columns r b p s c d.
func Flags(state string) string {
	f := []byte("------")
	switch state {
	case api.StateRunning:
		f[0] = 'r'
	case api.StateBlocked:
		f[1] = 'b'
	case api.StatePaused:
		f[2] = 'p'
	case api.StateShutdown:
		f[3] = 's'
	case api.StateCrashed:
		// xl shows a crashed domain as shut down with reason c.
		f[3], f[4] = 's', 'c'
	case api.StateDying:
		f[5] = 'd'
	}
	return string(f)
}

// Recover loads every definition, then re-attaches to every domain a
// previous daemon left running. A domain whose QEMU ended while no daemon
// watched gets on_crash, unless the host itself restarted since (the
// kernel's boot id changed): that is "host rebooted", never a crash, and
// no domain is lost to it. A store that cannot be read whole is refused
// (nothing is touched: its guests may run).
func (m *Manager) Recover(ctx context.Context) error {
	if b, err := m.o.Store.Get(ctx, keyNextID); err == nil {
		m.nextID, _ = strconv.Atoi(string(b))
	}
	m.mu.Lock()
	err := m.loadDefinitions(ctx)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	recs, err := readRecords(ctx, m.o.Store)
	if err != nil {
		return m.damaged(err)
	}
	known := map[string]bool{}
	for _, rec := range recs {
		known[rec.Spec.Name] = true
	}
	m.rebooted = m.hostRebooted(ctx)
	m.sweep(ctx, known)
	for _, rec := range recs {
		m.recoverOne(ctx, rec)
	}
	if err := m.o.Ledger.Oversold(); err != nil {
		m.o.Log.Error("the host is over its limits with the domains it runs: new domains are refused until some stop (or --reserve-mem/--vcpu-ratio are raised)", "err", err)
	}
	m.pruneLogs()
	return nil
}

// recoverOne takes back one runtime record.
func (m *Manager) recoverOne(ctx context.Context, rec record) {
	name := rec.Spec.Name
	if rt, ok := m.runtimeRecord(name); ok && (rt.Generation > rec.Generation || rt.Starting != nil && rec.Starting == nil) &&
		len(procfs.WithCmdline(m.runDir(name)+"/")) > 0 {
		// The store is older than the guest (restored from a backup):
		// the record next to its running QEMU is the truth.
		m.o.Log.Warn("the store's record of a domain is older than its running QEMU: using the one in its run dir", "name", name, "store_generation", rec.Generation, "run_generation", rt.Generation)
		rec = rt
	}
	m.mu.Lock()
	d, defined := m.doms[name]
	if !defined {
		d = &dom{console: newConsole(m.consoleLog(name))}
		d.con.Store(d.console)
		m.doms[name] = d
	}
	if rec.ID >= m.nextID {
		m.nextID = rec.ID + 1
	}
	if rec.Starting != nil && rec.Starting.ID >= m.nextID {
		m.nextID = rec.Starting.ID + 1
	}
	m.mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rec = rec
	m.view(d)
	if rec.Starting != nil && rec.Engine == nil {
		m.recoverStart(ctx, d)
		return
	}
	if rec.Ending != nil {
		// It ended and its action was decided but not carried out.
		m.o.Ledger.Adopt(name, rec.Spec.MaxMemMiB, m.overhead(rec.Spec, rec.Accel), rec.Spec.MaxVCPUs)
		m.o.Log.Warn("finishing the end of a domain the last daemon left undone", "name", name, "action", rec.Ending.Action)
		for _, t := range rec.Taps {
			m.unplugTap(t)
		}
		d.rec.Taps = nil
		m.removeCgroup(name)
		m.applyAction(d, rec.Ending.Action, rec.Ending.State)
		return
	}
	if rec.State == api.StateShutdown || rec.State == api.StateCrashed {
		return // preserved: holds no resources
	}
	if err := m.o.Ledger.Adopt(name, rec.Spec.MaxMemMiB, m.overhead(rec.Spec, rec.Accel), rec.Spec.MaxVCPUs); err != nil {
		m.o.Log.Error("a running domain does not fit the ledger", "name", name, "err", err)
	}
	inst, err := m.o.Engine.Attach(ctx, rec.Engine)
	if err == nil {
		err = d.console.Connect(inst.SerialPath())
		if err != nil {
			inst.Kill()
		}
	}
	if err != nil {
		m.lostWhileAway(d, err)
		return
	}
	d.setInst(inst)
	d.uid.Store(int64(rec.QEMUUID))
	d.ended = make(chan struct{})
	if m.o.Networks != nil {
		// Its taps kept running; the network side learns them again
		// (leases, filters) before it renders the filter.
		for i, t := range rec.Taps {
			if i < len(rec.Spec.Vifs) {
				if err := m.o.Networks.Plug(ctx, name, t, rec.Spec.Vifs[i]); err != nil {
					m.o.Log.Error("re-registering a vif", "name", name, "tap", t, "err", err)
				}
			}
		}
	}
	st, stErr := inst.Status(ctx)
	if s := rec.Starting; s != nil && stErr == nil {
		// Recorded, but the start was not marked done: its vCPUs may
		// not have been started. An incoming migration is never resumed
		// here (the source may still run it).
		if s.Resume && s.Kind != kindMigrate && (st == "prelaunch" || st == "paused") {
			if err := inst.Resume(ctx); err != nil {
				m.o.Log.Error("starting the vCPUs of an interrupted start", "name", name, "err", err)
			} else {
				st = "running"
				m.o.Log.Warn("finished a start the last daemon left undone", "name", name)
			}
		}
		d.rec.Starting = nil
	}
	if stErr == nil {
		// postmigrate: handed over to another host, unconfirmed.
		if st == "paused" || st == "prelaunch" || st == "postmigrate" {
			d.rec.State = api.StatePaused
		} else if st == "running" {
			d.rec.State = api.StateRunning
		}
	}
	m.save(ctx, d)
	m.watch(d, inst, d.ended)
	m.o.Log.Info("re-attached domain", "name", name, "id", rec.ID, "pid", inst.PID())
}

// recoverStart finishes or undoes a start the last daemon was killed in
// before its QEMU was recorded: that QEMU (if it got so far) never ran
// guest code, so stopping it loses nothing; then a restart is carried out
// again, an interrupted create is undone, and a start is left to redo.
// Caller holds d.mu.
func (m *Manager) recoverStart(ctx context.Context, d *dom) {
	name, st := d.rec.Spec.Name, d.rec.Starting
	if pids := procfs.WithCmdline(m.runDir(name) + "/"); len(pids) > 0 {
		m.o.Log.Warn("stopping the QEMU of a start the last daemon did not finish (it never ran the guest)", "name", name, "pids", pids)
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		if !procfs.WaitGone(pids, 10*time.Second) {
			d.stray = pids
		}
	}
	for _, t := range st.Taps {
		m.unplugTap(t)
	}
	m.removeCgroup(name)
	for _, f := range []string{"qmp.sock", "serial.sock", "qemu.pid"} {
		os.Remove(filepath.Join(m.runDir(name), f))
	}
	d.rec.Starting, d.rec.Engine, d.rec.Taps = nil, nil, nil
	if len(d.stray) > 0 {
		m.holdStray(d, errors.New("it did not die when killed"))
		return
	}
	switch st.Kind {
	case kindRestart:
		m.o.Log.Warn("restarting a domain whose restart the last daemon did not finish", "name", name)
		m.o.Ledger.Adopt(name, d.rec.Spec.MaxMemMiB, m.overhead(d.rec.Spec, d.rec.Accel), d.rec.Spec.MaxVCPUs)
		m.applyAction(d, api.ActionRestart, api.StateCrashed)
	case kindStart:
		d.rec.LastReason = fmt.Sprintf("start interrupted: the daemon stopped while it started it; `ringfence start %s`", name)
		m.keepOrPreserve(d, api.StateShutdown)
	default: // a create, restore or incoming migration: undone
		m.o.Log.Warn("undoing a create the last daemon did not finish", "name", name, "kind", st.Kind)
		if d.def != nil {
			d.rec.LastReason = fmt.Sprintf("start interrupted: the daemon stopped while it created it; `ringfence start %s`", name)
		}
		m.endLocked(d, api.StateShutdown)
	}
}

// keepOrPreserve keeps a domain that does not run: a defined one by its
// definition, a transient one by its record. Caller holds d.mu.
func (m *Manager) keepOrPreserve(d *dom, state string) {
	if d.def != nil {
		m.keepStopped(d, state)
		return
	}
	d.rec.State = state
	m.o.Ledger.Release(d.rec.Spec.Name)
	m.save(context.Background(), d)
	m.view(d)
}

// holdStray keeps a domain whose QEMU runs but cannot be managed: it
// holds its resources and says so; nothing is killed on a guess. Caller
// holds d.mu.
func (m *Manager) holdStray(d *dom, why error) {
	name := d.rec.Spec.Name
	m.o.Ledger.Adopt(name, d.rec.Spec.MaxMemMiB, m.overhead(d.rec.Spec, d.rec.Accel), d.rec.Spec.MaxVCPUs)
	d.rec.State = api.StateCrashed
	d.rec.LastReason = fmt.Sprintf("its QEMU (pid %v) runs but could not be re-attached (%v): it keeps its resources; `ringfence destroy %s` stops it", d.stray, why, name)
	m.o.Log.Error("a domain's QEMU runs unattached", "name", name, "pids", d.stray, "err", why)
	m.save(context.Background(), d)
	m.view(d)
}

// killStray stops an unattached QEMU on an explicit destroy and cleans
// what it had. Caller holds d.mu.
func (m *Manager) killStray(d *dom) {
	for _, p := range d.stray {
		syscall.Kill(p, syscall.SIGKILL)
	}
	procfs.WaitGone(d.stray, 10*time.Second)
	d.stray = nil
	for _, t := range d.rec.Taps {
		m.unplugTap(t)
	}
	d.rec.Taps, d.rec.Engine = nil, nil
	m.removeCgroup(d.rec.Spec.Name)
}

// lostWhileAway handles a domain whose QEMU ended while no daemon ran.
// Caller holds d.mu.
func (m *Manager) lostWhileAway(d *dom, why error) {
	name := d.rec.Spec.Name
	if pids := procfs.WithCmdline(m.runDir(name) + "/"); len(pids) > 0 {
		// Not ended: it runs but does not answer (or its record is not
		// what runs). A live QEMU is evidence, not garbage.
		d.stray = pids
		m.holdStray(d, why)
		return
	}
	for _, t := range d.rec.Taps {
		m.unplugTap(t)
	}
	oom := m.oomReason(d)
	m.removeRunDir(name)
	d.rec.Taps, d.rec.Engine = nil, nil
	if m.rebooted {
		m.o.Log.Warn("domain stopped by the host's reboot", "name", name, "id", d.rec.ID)
		d.rec.LastReason = reasonHostReboot
		// A created (transient) domain is kept too, stopped, so nothing a
		// customer had is lost: `start` brings it back.
		m.keepOrPreserve(d, api.StateShutdown)
		return
	}
	m.o.Log.Warn("domain died while the daemon was away; applying on_crash", "name", name, "id", d.rec.ID, "err", why)
	d.rec.LastReason = "crash: the VM ended while the daemon was not running"
	if oom != "" {
		d.rec.LastReason = oom
	}
	m.applyAction(d, d.rec.Spec.OnCrash, api.StateCrashed)
}

// keyBootID is the kernel boot id the daemon last ran under.
const keyBootID = "meta/boot-id"

// hostRebooted reads the kernel's boot id, compares it with the one the
// last daemon recorded and records the current one. True when it changed
// (or was never recorded): the host itself restarted.
func (m *Manager) hostRebooted(ctx context.Context) bool {
	path := m.o.BootIDFile
	if path == "" {
		path = "/proc/sys/kernel/random/boot_id"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		m.o.Log.Warn("reading the kernel's boot id", "err", err)
		return false
	}
	cur := strings.TrimSpace(string(b))
	prev, _ := m.o.Store.Get(ctx, keyBootID)
	if err := store.Put(ctx, m.o.Store, keyBootID, []byte(cur)); err != nil {
		m.o.Log.Error("recording the boot id", "err", err)
	}
	m.firstSinceBoot = string(prev) != cur
	return len(prev) > 0 && string(prev) != cur
}

// sweep looks at run dirs that no record names. Without a live process
// it is what a killed daemon left of a start: its taps and cgroups go with
// it. With one, it is evidence, never garbage: a QEMU whose record sits
// in its run dir is re-adopted (the store is older than it, restored from
// a backup); one that cannot be accounted for is reported, left running,
// and new domains are refused until an admin resolves it.
func (m *Manager) sweep(ctx context.Context, known map[string]bool) {
	base := filepath.Join(m.o.RunDir, "domains")
	ents, _ := os.ReadDir(base)
	for _, ent := range ents {
		name := ent.Name()
		if known[name] || !ent.IsDir() {
			continue
		}
		dir := filepath.Join(base, name)
		rt, haveRec := m.runtimeRecord(name)
		if pids := procfs.WithCmdline(dir + "/"); len(pids) > 0 {
			if haveRec {
				m.o.Log.Warn("re-adopting a running domain the store did not know (the store is older than it: restored from a backup?)", "name", name, "pids", pids)
				m.recoverOne(ctx, rt)
				continue
			}
			m.o.Log.Error("a QEMU runs from a run dir no record names: left running; new domains are refused until it is resolved (kill it, or restore the store that knew it)", "dir", dir, "pids", pids)
			m.mu.Lock()
			m.unaccounted = append(m.unaccounted, pids...)
			m.mu.Unlock()
			continue
		}
		if haveRec {
			taps := rt.Taps
			if rt.Starting != nil {
				taps = append(taps, rt.Starting.Taps...)
			}
			for _, tap := range taps {
				network.DeleteTap(tap)
			}
		}
		m.o.Log.Warn("removing a runtime dir with no domain record", "dir", dir)
		os.RemoveAll(dir)
		m.removeCgroup(name)
	}
}

// unaccountedErr refuses admissions while a QEMU runs that no record
// accounts for (its resources are unknown). It clears itself once they
// are gone. Caller holds m.mu.
func (m *Manager) unaccountedErr() error {
	var alive []int
	for _, p := range m.unaccounted {
		if procfs.Alive(p, 0) {
			alive = append(alive, p)
		}
	}
	m.unaccounted = alive
	if len(alive) == 0 {
		return nil
	}
	return api.Errorf(api.ErrInsufficient, "new domains are refused: QEMU processes %v run from run dirs no record names, so their resources are unknown (see the daemon log); stop them, or restore the store that knew them", alive)
}

// HostWarnings are the conditions an admin must resolve: an oversold
// ledger after a restart with stricter limits, QEMUs no record accounts
// for. While they hold, new domains are refused.
func (m *Manager) HostWarnings() []string {
	var out []string
	if err := m.o.Ledger.Oversold(); err != nil {
		out = append(out, err.Error()+": new domains are refused until some stop")
	}
	m.mu.Lock()
	if err := m.unaccountedErr(); err != nil {
		out = append(out, err.Error())
	}
	m.mu.Unlock()
	return out
}

// Count is the number of domains.
func (m *Manager) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.doms)
}
