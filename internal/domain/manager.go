// Package domain holds the operations every frontend (CLI via the API,
// later the web UI and peers) calls: create, list, shutdown, reboot,
// destroy, pause, unpause, console, and re-attach at daemon start.
//
// Each operation validates first, then takes the steps (ledger, run dir,
// taps, engine, store) with a revert stack, so a failure leaves nothing
// behind. Each running incarnation of a domain has one watcher goroutine
// that applies on_poweroff / on_reboot / on_crash when its VM ends.
//
// Files by concern: manager.go (the registry: records, Options, lookup,
// views), admission.go, launch.go, lifecycle.go, recover.go, define.go
// (definitions), hostboot.go (host boot and shutdown), migrate.go,
// save.go, export.go, clone.go, snapshot.go, hotplug.go.
package domain

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/procfs"
	domspec "github.com/ringfence/ringfence/internal/spec"
	"github.com/ringfence/ringfence/internal/storage"
	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/usage"
)

const (
	keyDomains = "domains/"
	keyNextID  = "meta/next-domid"
)

// record is what the store keeps per domain.
type record struct {
	Spec       api.DomainSpec  `json:"spec"`
	ID         int             `json:"id"`
	State      api.State       `json:"state"`
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
	// Tenant owns the domain ("" = the host's own).
	Tenant string `json:"tenant,omitempty"`
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
	Action string    `json:"action"`
	State  api.State `json:"state"`
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
	cancelMig context.CancelCauseFunc
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
	// askedBy is who pressed the power button last (shutdown, reboot):
	// the event of the end it causes names them. Guarded by mu.
	askedBy *api.Actor
	// tenant owns the domain ("" = the host). Set when the dom is made
	// and never changed (the record and definition keep it in the
	// store), so it is read without mu: who may see a domain must be
	// known even while a long operation holds it.
	tenant string
	// endWhy is why its usage records end when it goes ("" =
	// destroyed): saved, migrated. Guarded by mu.
	endWhy string
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
	// Networks owns every vif's tap, rate, address and filter
	// (internal/netmgr); nil: domains with vifs are refused.
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
	// Events takes the lifecycle events (nil: none are published).
	Events Publisher
	// Tenancy says what a tenant's domain may use and checks its disk
	// quota (internal/tenants); nil: no tenants.
	Tenancy Tenancy
	// Usage is the usage ledger (internal/usage): told what each domain
	// holds at every save, fed every sample; nil: no accounting.
	Usage *usage.Ledger
	// Names refuses a name another host of the cluster has, for the
	// verbs that make a domain from a file or a stream (restore, import,
	// an incoming migration); nil: every name is this host's to give.
	Names NameClaim
}

// NameClaim is the cluster's side of a new domain's name
// (internal/cluster): it refuses a name another host has.
type NameClaim interface {
	Claim(ctx context.Context, name string) error
}

// claim asks Options.Names, if any, for name.
func (m *Manager) claim(ctx context.Context, name string) error {
	if m.o.Names == nil {
		return nil
	}
	return m.o.Names.Claim(ctx, name)
}

// Tenancy is the tenants' side of admission (internal/tenants): the one
// rule of which files and bridges a domain of a tenant ("" = the host)
// may use, and the disk quota a tenant's new disks count against.
type Tenancy interface {
	CheckFile(tenant, what, path string, write bool) error
	CheckNetwork(tenant, bridge string) error
	CheckDisk(ctx context.Context, tenant string, add int64, what string) error
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
	hist    history // the samples' recent past, per domain (graphs)
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
	// haGate says whether an HA domain may start (restart: by its own
	// on_* action) here; see SetHAGate.
	haGate atomic.Pointer[HAGate]
	haLost atomic.Pointer[HALost] // see SetHALost
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

func (m *Manager) get(name string) (*dom, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.doms[name]
	if ok {
		return d, nil
	}
	// xl accepts a domid or a UUID where it accepts a name. Both are
	// read from the last view: a domain busy under a long operation is
	// found all the same.
	id, idErr := strconv.Atoi(name)
	uuid := domspec.ValidUUID(name) == nil
	for _, x := range m.doms {
		v := x.snap.Load()
		if v == nil {
			continue
		}
		live := v.State != api.StateShutdown && v.State != api.StateCrashed
		if idErr == nil && v.ID == id && live || uuid && strings.EqualFold(v.Spec.UUID, name) {
			return x, nil
		}
	}
	return nil, NotFound(name)
}

// NotFound is the one answer for a domain that does not exist, and (to a
// tenant's principal) for another tenant's: the same words and status,
// so nothing tells the two apart.
func NotFound(name string) error {
	return api.Errorf(api.ErrNotFound, "no domain named %q (see `ringfence list`)", name)
}

// Owner is the tenant of the domain a name, domid or UUID names ("" =
// the host's), or NotFound.
func (m *Manager) Owner(name string) (string, error) {
	d, err := m.get(name)
	if err != nil {
		return "", err
	}
	return d.tenant, nil
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
	v := api.Domain{Spec: d.rec.Spec.Shown(), ID: d.rec.ID, State: d.rec.State, Taps: d.rec.Taps, LastReason: d.rec.LastReason, LastConsole: d.rec.LastConsole,
		Defined: d.def != nil, Tenant: d.tenant}
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
func Flags(state api.State) string {
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

// Count is the number of domains.
func (m *Manager) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.doms)
}
