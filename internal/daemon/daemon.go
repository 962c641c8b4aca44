// Package daemon is `ringfence serve`: it opens the store, probes the host,
// recovers domains, and serves the JSON API on a root-only unix socket.
// It holds no domain logic: every route calls domain.Manager.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/audit"
	"github.com/ringfence/ringfence/internal/cluster"
	"github.com/ringfence/ringfence/internal/domain"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/events"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/netmgr"
	"github.com/ringfence/ringfence/internal/operations"
	"github.com/ringfence/ringfence/internal/peer"
	"github.com/ringfence/ringfence/internal/storage"
	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/tenants"
	"github.com/ringfence/ringfence/internal/tokens"
	"github.com/ringfence/ringfence/internal/usage"
	"github.com/ringfence/ringfence/internal/webui"
)

// Config is the daemon's configuration.
type Config struct {
	StateDir   string // store and images; default /var/lib/ringfence
	RunDir     string // sockets and per-domain runtime; default /run/ringfence
	Socket     string // API socket; default RunDir/ringfence.sock
	QEMUBinary string
	ReserveMiB int // host memory kept from domains; 0 = default
	Accel      string
	// OverheadMiB overrides the per-domain QEMU memory overhead counted by
	// the ledger and the cgroup limit (default: measured per accelerator).
	OverheadMiB int
	// VCPURatio is how many vCPUs each host CPU may carry (1 = strict).
	VCPURatio float64
	// NoCgroups runs without per-domain cgroups (no limits, weights or
	// caps are enforced); for development hosts only.
	NoCgroups bool
	// Listen is the peer listener (mutual TLS) for other hosts, e.g. ":7443";
	// empty: none.
	Listen string
	// APIListen is the remote API listener (TLS 1.3, API tokens), e.g.
	// ":8443"; empty: none.
	APIListen string
	// QEMUIDs is the uid range QEMUs run as, one uid per running domain:
	// "BASE[:COUNT]" ("" = the default; "root": QEMU stays root,
	// development only).
	QEMUIDs string
	// DiskRoots, when set, are the only directories file disks, kernels,
	// ramdisks, media and pools may be in.
	DiskRoots []string
	// LogFile is the daemon's log ("" = stderr); LogDir holds the
	// domains' logs; LogRetention keeps those of gone domains (0: 30 days).
	LogFile      string
	LogLevel     string // debug, info, warn, error
	LogDir       string
	LogRetention time.Duration
	// BootIDFile overrides the kernel's boot id (tests of a host reboot).
	BootIDFile string
	// AutoDir holds domain files defined and started at host boot ("" =
	// /etc/ringfence/auto for the default state dir, else none).
	AutoDir string
	// QMPTimeout bounds a monitor command (0: 30 s): a stopped or hung
	// QEMU never holds an operation (and the domain's lock) longer.
	QMPTimeout time.Duration
	// RestartLimit restarts the guest causes within RestartWindow stop
	// its restarting (0: 5 in 10 minutes).
	RestartLimit  int
	RestartWindow time.Duration
	// ReadTimeout bounds reading one request (headers and body) on every
	// listener; IdleTimeout closes a kept-alive connection that sends
	// nothing. Zero: the defaults (30 s, 120 s).
	ReadTimeout, IdleTimeout time.Duration
	// MetricsListen serves GET /metrics (Prometheus text, no token) on
	// its own plain-HTTP listener, e.g. 127.0.0.1:9465; empty: none.
	MetricsListen string
	// Prices is the price file invoices are rated with ("" =
	// DefaultPrices), read at each invoice.
	Prices string
	// MaxUpload caps one upload (an archive to import, a save image to
	// restore) over the API, in bytes (0: DefaultMaxUpload).
	MaxUpload int64
	// EtcdEndpoints point the cluster at an existing etcd cluster instead
	// of members embedded in the first three daemons.
	EtcdEndpoints []string
}

// DefaultMaxUpload is the largest upload a daemon takes unless told.
const DefaultMaxUpload = 64 << 30

// Where a production host keeps the domains' logs and its autostart files
// (the state and run dirs are api's: the client needs them too).
const (
	DefaultLogDir  = "/var/log/ringfence"
	DefaultAutoDir = "/etc/ringfence/auto"
)

// Server is a running daemon.
type Server struct {
	logRing *logSink
	trust   *peer.Trust
	cluster *cluster.Cluster
	ha      *haRuntime // HA's fencing and takeovers (nil: not started)
	// declMu: a cluster-wide network or pool is declared (or deleted)
	// and made here, or synced from the declarations, one at a time.
	declMu sync.Mutex
	// publishMu: this host's domains are published (publishNow) with no
	// local change in between that a cold move must not race.
	publishMu sync.Mutex
	// forwardMux serves the calls peers forward (the user roles' routes).
	forwardMux http.Handler
	ledger     *host.Ledger
	pools      *storage.Pools
	nets       *netmgr.Manager
	cfg        Config
	mgr        *domain.Manager
	st         store.Store
	info       api.HostInfo
	accel      host.Accel
	log        *slog.Logger
	audit      *audit.Log   // every mutating call (nil: none kept)
	metrics    http.Handler // GET /1.0/metrics and --metrics-listen
	tokens     *tokens.Manager
	ops        *operations.Registry
	bus        *events.Bus  // the event stream (GET /1.0/events)
	saves      pendingSaves // streamed saves waiting for their client
	tenants    *tenants.Manager
	owners     owners          // who owns what a path names (the tenants' gate)
	web        *webui.Sessions // the web admin's browsers (API listener only)
	usage      *usage.Ledger
}

// Run serves until SIGINT/SIGTERM. Guests keep running after it returns.
// The steps are startup's methods, in order; what each must undo is
// undone, in reverse, when Run returns.
func Run(cfg Config) error {
	b := &startup{cfg: withDefaultDirs(cfg)}
	defer b.unwind()
	for _, step := range []func() error{
		b.openLog,
		b.takeDirs,
		b.probeQEMU,
		b.chooseAccel,
		b.sizeHost,
		b.findCgroups,
		b.qemuUsers,
		b.newManagers,
		b.openTrust,
		b.openCluster,
		b.openAudit,
		b.listenAPI,
		b.recoverDomains,
		b.listenRemote,
		b.listenPeers,
		b.listenMetrics,
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return b.serve()
}

// server is an HTTP server for one listener: who its callers are comes
// from tag, and slow or idle clients are cut off (a stream, once upgraded
// or started, is the handler's to time).
func (s *Server) server(h http.Handler, tag func(context.Context, net.Conn) context.Context) *http.Server {
	rt, it := s.cfg.ReadTimeout, s.cfg.IdleTimeout
	if rt <= 0 {
		rt = 30 * time.Second
	}
	if it <= 0 {
		it = 120 * time.Second
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(rt, 10*time.Second),
		ReadTimeout:       rt,
		IdleTimeout:       it,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       tag,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// overheadModel says how QEMU's memory beyond guest RAM is counted.
func overheadModel(e engine.OverheadEstimator, accel string, fixed int) string {
	if fixed > 0 {
		return fmt.Sprintf("%d MiB per domain (serve --qemu-overhead)", fixed)
	}
	return e.OverheadModel(accel)
}

// writableDir makes dir if needed and proves a file can be made in it
// (a read-only mount or a file in its place fails here, at start, rather
// than at the first guest's log).
func writableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

// openStore checks the store file in a child process (a damaged file
// faults or panics inside bbolt), refuses a damaged one (nothing is
// started or stopped: its guests may run) naming the backup to restore,
// and opens a good one. It is backed up once recovery has read it whole.
func openStore(stateDir string, log *slog.Logger) (*store.Bolt, error) {
	path := filepath.Join(stateDir, "state.db")
	if _, err := os.Stat(path); err == nil {
		self, _ := os.Executable()
		if err := store.CheckIsolated(self, path); err != nil {
			fix := "no backup exists: restore a copy of your own, or move it away to start empty (every domain would be forgotten; running guests would be left alone)"
			if b := store.Backups(stateDir); len(b) > 0 {
				fix = fmt.Sprintf("restore the newest good backup: `ringfence store restore --state-dir %s` (it checks it first; %d backups in %s)", stateDir, len(b), store.BackupDir(stateDir))
			}
			return nil, fmt.Errorf("the store %s is damaged: %v. The daemon did not start, and touched no guest. %s", path, err, fix)
		}
	} else if b := store.Backups(stateDir); len(b) > 0 {
		// A store that vanished while its backups remain was deleted or
		// lost, not never made: starting empty would forget every domain.
		return nil, fmt.Errorf("the store %s is missing, but %d backups of it exist in %s. The daemon did not start, and touched no guest. Restore the newest good one: `ringfence store restore --state-dir %s`", path, len(b), store.BackupDir(stateDir), stateDir)
	}
	return store.OpenBolt(path)
}

// autoDir is the directory of domain files started at host boot: the
// configured one, else /etc/ringfence/auto for the host's own daemon.
func autoDir(cfg Config) string {
	if cfg.AutoDir != "" {
		return cfg.AutoDir
	}
	if abs, _ := filepath.Abs(cfg.StateDir); abs == api.DefaultStateDir {
		return DefaultAutoDir
	}
	return ""
}

// diskPolicy is the host's rule for what may become a guest's disk, boot
// file, medium or pool (internal/storage.Policy).
func diskPolicy(cfg Config) (*storage.Policy, error) {
	state, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	run, err := filepath.Abs(cfg.RunDir)
	if err != nil {
		return nil, err
	}
	// Symlinks resolved, as the policy compares real paths.
	if r, err := filepath.EvalSymlinks(state); err == nil {
		state = r
	}
	if r, err := filepath.EvalSymlinks(run); err == nil {
		run = r
	}
	p := &storage.Policy{StateDir: state, RunDir: run,
		Managed: []string{filepath.Join(state, "images"), filepath.Join(state, "imports")}}
	for _, r := range cfg.DiskRoots {
		if !filepath.IsAbs(r) {
			return nil, fmt.Errorf("--disk-roots %q must be an absolute path", r)
		}
		if _, err := os.Stat(r); err != nil {
			return nil, fmt.Errorf("--disk-roots %s: %w", r, err)
		}
		p.Roots = append(p.Roots, filepath.Clean(r))
	}
	return p, nil
}

// lockRunDir takes the run dir for this daemon (an flock held for its
// life; the file says who holds it) or says who has it.
func lockRunDir(runDir, stateDir string) (func(), error) {
	p := filepath.Join(runDir, "daemon.lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking the run dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(p)
		f.Close()
		return nil, fmt.Errorf("run dir %s is in use by another ringfence daemon (%s): give each daemon its own --run-dir and --state-dir", runDir, strings.TrimSpace(string(holder)))
	}
	abs, _ := filepath.Abs(stateDir)
	f.Truncate(0)
	f.WriteAt([]byte(fmt.Sprintf("pid %d, state dir %s\n", os.Getpid(), abs)), 0)
	return func() { f.Close() }, nil
}

// listen opens the API socket readable and writable by root only.
func listen(path string) (net.Listener, error) {
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("another ringfence daemon is serving %s", path)
	}
	os.Remove(path)
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func (s *Server) hostInfo(w http.ResponseWriter, r *http.Request) {
	info := s.info
	if mem, err := host.ReadMemory(); err == nil {
		info.MemTotalMiB, info.MemFreeMiB = mem.TotalMiB, mem.AvailableMiB
	}
	info.Domains = s.mgr.Count()
	info.Ledger = s.ledger.Snapshot()
	info.Peer = s.trust.Status()
	info.Warnings = s.mgr.HostWarnings()
	reply(w, info, nil)
}

// schedCredit and vcpuPin take bodies whose fields default to -1
// (unchanged; every vCPU), so they decode onto those defaults.
func (s *Server) schedCredit(w http.ResponseWriter, r *http.Request) {
	s.withDefaults(w, r, &api.SchedCreditRequest{Weight: -1, Cap: -1}, func(name string, req any) error {
		q := req.(*api.SchedCreditRequest)
		return s.mgr.SchedCredit(r.Context(), name, q.Weight, q.Cap)
	})
}

func (s *Server) vcpuPin(w http.ResponseWriter, r *http.Request) {
	s.withDefaults(w, r, &api.VCPUPinRequest{VCPU: -1}, func(name string, req any) error {
		q := req.(*api.VCPUPinRequest)
		return s.mgr.VCPUPin(r.Context(), name, q.VCPU, q.CPUs)
	})
}

// withDefaults decodes the body onto req (pre-filled with defaults), runs
// fn on the domain and replies with the domain as it is then.
func (s *Server) withDefaults(w http.ResponseWriter, r *http.Request, req any, fn func(name string, req any) error) {
	if err := decode(r, req); err != nil {
		reply(w, nil, err)
		return
	}
	name := r.PathValue("name")
	out, err := s.domainView(name, fn(name, req))
	reply(w, out, err)
}
