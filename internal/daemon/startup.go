package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/domain"
	"github.com/ringfence/ringfence/internal/engine/qemu"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/launch"
	"github.com/ringfence/ringfence/internal/netmgr"
	"github.com/ringfence/ringfence/internal/operations"
	"github.com/ringfence/ringfence/internal/peer"
	"github.com/ringfence/ringfence/internal/procfs"
	"github.com/ringfence/ringfence/internal/storage"
	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/tenants"
	"github.com/ringfence/ringfence/internal/tokens"
	"github.com/ringfence/ringfence/internal/usage"
)

// startup is one run of the daemon, from its log to its last request:
// each method is a step, taken in order by Run, and what a step must undo
// when the daemon ends (or a later step fails) it pushes with later, so
// the undoing happens in reverse, as deferred calls in one function would.
type startup struct {
	cfg     Config
	sink    *logSink
	log     *slog.Logger
	undo    []func()
	st      *store.Bolt
	eng     *qemu.Engine
	qv      string
	accel   host.Accel
	ledger  *host.Ledger
	cgroups *host.Cgroups
	qemuIDs host.IDRange
	nets    *netmgr.Manager
	mgr     *domain.Manager
	s       *Server
	raw     net.Listener
	ctx     context.Context
	srv     *http.Server
}

// later pushes f to be run when the daemon ends.
func (b *startup) later(f func()) { b.undo = append(b.undo, f) }

// unwind runs what later pushed, last first; deferring each keeps Go's
// rule that one that panics does not skip the rest.
func (b *startup) unwind() {
	for _, f := range b.undo {
		defer f()
	}
}

// withDefaultDirs fills in the state dir, run dir and API socket.
func withDefaultDirs(cfg Config) Config {
	if cfg.StateDir == "" {
		cfg.StateDir = api.DefaultStateDir
	}
	if cfg.RunDir == "" {
		cfg.RunDir = api.DefaultRunDir
	}
	if cfg.Socket == "" {
		cfg.Socket = api.SocketPath(cfg.RunDir)
	}
	return cfg
}

// openLog opens the daemon's own log at the configured level.
func (b *startup) openLog() error {
	sink, err := newLogSink(b.cfg.LogFile)
	if err != nil {
		return fmt.Errorf("the daemon's log %s: %w", b.cfg.LogFile, err)
	}
	var level slog.Level
	if b.cfg.LogLevel != "" {
		if err := level.UnmarshalText([]byte(b.cfg.LogLevel)); err != nil {
			return fmt.Errorf("--log-level %q: want debug, info, warn or error", b.cfg.LogLevel)
		}
	}
	b.sink = sink
	b.log = slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: level}))
	return nil
}

// takeDirs makes the state and run dirs, takes the run dir for this
// daemon and opens the store.
func (b *startup) takeDirs() error {
	// QEMUs we start are our children; re-parented ones (after a restart)
	// come to us as subreaper so they are reaped at once, not every few
	// seconds by PID 1.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	// STATE/imports holds imports and, unnamed, uploads and an export's
	// disk copies (made now: a transfer leaves no trace there).
	for _, d := range []string{b.cfg.StateDir, b.cfg.RunDir, filepath.Join(b.cfg.StateDir, "imports")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	// Before anything else touches the run dir: a daemon that took over
	// another's run dir would kill that daemon's guests as leftovers.
	unlock, err := lockRunDir(b.cfg.RunDir, b.cfg.StateDir)
	if err != nil {
		return err
	}
	b.later(unlock)
	st, err := openStore(b.cfg.StateDir, b.log)
	if err != nil {
		return err
	}
	b.later(func() { st.Close() })
	b.st = st
	return nil
}

// probeQEMU makes the engine and asks its QEMU for its version.
func (b *startup) probeQEMU() error {
	b.eng = qemu.New(b.cfg.QEMUBinary)
	b.eng.QMPTimeout = b.cfg.QMPTimeout
	if self, err := os.Executable(); err == nil {
		b.eng.Launcher = launch.Prefix(self)
	}
	qv, err := b.eng.Version()
	b.qv = qv
	return err
}

// chooseAccel probes the accelerator and applies --accel.
func (b *startup) chooseAccel() error {
	b.accel = host.ProbeAccel(procfs.CPUInfo, "/dev/kvm")
	switch b.cfg.Accel {
	case "":
	case "tcg":
		b.accel = host.Accel{Name: "tcg", Reason: "forced by --accel=tcg"}
	case "kvm":
		if b.accel.Name != "kvm" {
			return fmt.Errorf("--accel=kvm but %s", b.accel.Reason)
		}
	default:
		return fmt.Errorf("--accel must be kvm or tcg, not %q", b.cfg.Accel)
	}
	return nil
}

// sizeHost makes the ledger of the host's memory and CPUs.
func (b *startup) sizeHost() error {
	mem, err := host.ReadMemory()
	if err != nil {
		return fmt.Errorf("reading host memory: %w", err)
	}
	reserve := b.cfg.ReserveMiB
	if reserve <= 0 {
		reserve = host.DefaultReserve(mem.TotalMiB)
	}
	b.ledger = host.NewLedger(mem.TotalMiB, reserve, host.CPUs(), b.cfg.VCPURatio)
	return nil
}

// findCgroups finds the daemon's cgroup subtree (none with --no-cgroups).
func (b *startup) findCgroups() error {
	if b.cfg.NoCgroups {
		return nil
	}
	// The default state dir owns "ringfence"; any other (a second
	// daemon on the host, tests) gets its own subtree.
	sub := "ringfence"
	if abs, _ := filepath.Abs(b.cfg.StateDir); abs != api.DefaultStateDir {
		sum := sha256.Sum256([]byte(abs))
		sub = "ringfence-" + hex.EncodeToString(sum[:4])
	}
	cgroups, err := host.DetectCgroups(sub)
	if err != nil {
		return fmt.Errorf("%w: resources cannot be guaranteed without cgroups (--no-cgroups runs without them)", err)
	}
	b.cgroups = cgroups
	b.log.Info("cgroups", "version", cgroups.Version, "base", cgroups.Base(), "scope", cgroups.Scope)
	return nil
}

// qemuUsers takes the uids QEMUs run as and checks no one else has them.
func (b *startup) qemuUsers() error {
	b.qemuIDs = host.DefaultIDRange
	if b.cfg.QEMUIDs != "" {
		ids, err := host.ParseIDRange(b.cfg.QEMUIDs)
		if err != nil {
			return err
		}
		b.qemuIDs = ids
	}
	if err := b.qemuIDs.Check("/etc/passwd", "/etc/group", "/etc/subuid", "/etc/subgid"); err != nil {
		return err
	}
	if b.qemuIDs.Count == 0 {
		b.log.Warn("QEMU runs as root (--qemu-ids root): a guest that takes over its QEMU owns the host; development only")
	}
	return nil
}

// domainLogDir is where the domains' logs go: the configured dir, else
// the host's for the default state dir, else one in the state dir.
func domainLogDir(cfg Config) string {
	if cfg.LogDir != "" {
		return cfg.LogDir
	}
	if abs, _ := filepath.Abs(cfg.StateDir); abs != api.DefaultStateDir {
		return filepath.Join(cfg.StateDir, "log")
	}
	return DefaultLogDir
}

// newManagers makes the storage policy, networks, domain manager and the
// Server that serves them.
func (b *startup) newManagers() error {
	policy, err := diskPolicy(b.cfg)
	if err != nil {
		return err
	}
	chains := storage.NewChains(b.st)
	logDir := domainLogDir(b.cfg)
	if err := writableDir(logDir); err != nil {
		return fmt.Errorf("the domains' log dir cannot be written: %w; give a writable one (serve --log-dir, log_dir in %s)", err, "/etc/ringfence/ringfence.conf")
	}
	if b.nets, err = netmgr.New(context.Background(), b.st, b.log); err != nil {
		return fmt.Errorf("loading networks: %w", err)
	}
	cfg := b.cfg
	bus, err := b.openBus()
	if err != nil {
		return err
	}
	// Tenants' reservations are in the ledger before any domain is
	// adopted into it.
	tm, err := tenants.New(context.Background(), b.st, b.ledger)
	if err != nil {
		return b.mgrDamaged(err)
	}
	// The usage ledger's open records are read before recovery tells
	// it what each domain holds now.
	ul := usage.New(b.st)
	if err := ul.Load(context.Background()); err != nil {
		return b.mgrDamaged(err)
	}
	names := &nameClaim{} // its Server is made below
	b.mgr = domain.New(domain.Options{Names: names, Events: bus, Networks: b.nets, Store: b.st, Engine: b.eng, Ledger: b.ledger, Accel: b.accel, RunDir: cfg.RunDir, Log: b.log, QEMUIDs: b.qemuIDs,
		Cgroups: b.cgroups, HostCPUs: host.CPUs(), OverheadMiB: cfg.OverheadMiB, StateDir: cfg.StateDir, Policy: policy, Chains: chains,
		LogDir: logDir, LogRetention: cfg.LogRetention, BootIDFile: cfg.BootIDFile, AutoDir: autoDir(cfg),
		RestartLimit: cfg.RestartLimit, RestartWindow: cfg.RestartWindow, Tenancy: tm, Usage: ul})
	b.newServer(policy, chains)
	names.s = b.s
	b.s.usage = ul
	b.s.bus = bus
	b.wireTenants(tm)
	bus.Publish(api.Event{Type: api.EventHost, Action: "daemon-started", Detail: api.Release})
	return nil
}

// newServer makes the Server with what the host was found to be.
func (b *startup) newServer(policy *storage.Policy, chains *storage.Chains) {
	cfg, accel := b.cfg, b.accel
	hn, _ := os.Hostname()
	s := &Server{cfg: cfg, mgr: b.mgr, st: b.st, accel: accel, log: b.log, logRing: b.sink, info: api.HostInfo{
		Hostname: hn, CPUs: host.CPUs(), Accel: accel.Name, AccelReason: accel.Reason,
		QEMUVersion: b.qv, QEMUBinary: b.eng.Binary, Version: api.Release, StateDir: cfg.StateDir,
		QEMUOverhead: overheadModel(b.eng, accel.Name, cfg.OverheadMiB),
	}}
	if b.cgroups != nil {
		s.info.CgroupVersion, s.info.CgroupBase, s.info.CgroupScope = b.cgroups.Version, b.cgroups.Base(), b.cgroups.Scope
	}
	s.pools = storage.NewPools(b.st, b.mgr.DiskUsers)
	s.pools.Chains = chains
	s.pools.Policy = policy
	policy.Pools = s.pools.Dirs
	b.nets.Users = b.mgr.BridgeUsers
	s.nets = b.nets
	b.s = s
	b.log.Info("host probed", "accel", accel.Name, "reason", accel.Reason, "qemu", b.qv)
}

// wireTenants gives the tenants what they read of the host: each object
// keeps its own owner; the tenants only count and check.
func (b *startup) wireTenants(tm *tenants.Manager) {
	s := b.s
	tm.Src = tenants.Sources{
		Domains:  func() []api.Domain { return s.mgr.List(true) },
		Stats:    s.mgr.Stats,
		Pools:    s.pools.List,
		Volumes:  storage.Volumes,
		Networks: s.nets.List,
		DiskSize: storage.VirtualSize,
		Transfer: func(t string) int64 { return s.usage.Transfer(t, true) },
		Tokens: func(list func(string) ([]store.KV, error), tenant string) ([]string, error) {
			return tokens.Holders(list, tenant, time.Now())
		},
	}
	s.tenants, s.owners = tm, liveOwners{s}
}

// mgrDamaged is the refusal of a store whose tenants cannot be read.
func (b *startup) mgrDamaged(err error) error {
	return fmt.Errorf("the store %s cannot be read whole: %v. The daemon did not start, and touched no guest. Restore the newest good backup: `ringfence store restore --state-dir %s`",
		filepath.Join(b.cfg.StateDir, "state.db"), err, b.cfg.StateDir)
}

// openTrust opens this host's peer trust (its TLS identity and peers).
func (b *startup) openTrust() error {
	var err error
	if b.s.trust, err = peer.Open(peer.Files{Dir: filepath.Join(b.cfg.StateDir, "tls")}, b.cfg.Listen, b.log); err != nil {
		return err
	}
	b.s.ledger = b.ledger
	return nil
}

// listenAPI opens the API socket and starts taking signals: SIGINT and
// SIGTERM end the daemon, SIGHUP reopens its log.
func (b *startup) listenAPI() error {
	raw, err := listen(b.cfg.Socket)
	if err != nil {
		return err
	}
	b.raw = raw
	socket := b.cfg.Socket
	b.later(func() { os.Remove(socket) })
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	b.ctx = ctx
	b.later(stop)
	b.s.ops = operations.New(ctx) // operations run as long as the daemon
	if err := b.openOperations(); err != nil {
		return err
	}
	// SIGHUP reopens the log (logrotate), never ends the daemon.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go b.reopenLogs(hup)
	return nil
}

// reopenLogs reopens the daemon's log on each signal from hup.
func (b *startup) reopenLogs(hup <-chan os.Signal) {
	for range hup {
		if err := b.sink.Reopen(); err != nil {
			b.log.Error("reopening the log", "err", err)
		} else {
			b.log.Info("log reopened (SIGHUP)")
		}
	}
}

// recoverDomains takes back the domains, backs up the store (read whole
// by now), renders the network filter and starts the samplers.
func (b *startup) recoverDomains() error {
	if err := b.mgr.Recover(b.ctx); err != nil {
		return err
	}
	// Read whole: now it is worth a backup.
	if bk, err := b.st.Backup(b.cfg.StateDir); err != nil {
		b.log.Warn("backing up the store", "err", err)
	} else {
		b.log.Info("store read whole and backed up", "backup", bk)
	}
	b.later(b.nets.Close)
	if err := b.nets.Sync(); err != nil {
		// The kernel keeps the previous daemon's rules; say so loudly.
		b.log.Error("the network filter could not be rendered; the previous rules stay in force", "err", err)
	}
	go b.mgr.RunSampler(b.ctx, time.Second)
	go b.s.watchQuotas(b.ctx)
	go b.s.trust.RunSync(b.ctx)
	return nil
}

// listenPeers makes the admin server and, with --listen, serves peer
// hosts over mutual TLS.
func (b *startup) listenPeers() error {
	s, log := b.s, b.log
	b.srv = s.server(s.handler(socketRoles, nil), adminConn)
	if b.cfg.Listen == "" {
		return nil
	}
	praw, err := net.Listen("tcp", b.cfg.Listen)
	if err != nil {
		return fmt.Errorf("peer listener %s: %w", b.cfg.Listen, err)
	}
	gl := newGuardedListener(praw, "peer", maxConns, maxConnsPerSource, log)
	tl := newPeerListener(gl, s.trust.ServerConfig(), b.mgr, log)
	psrv := s.server(refuseTokens(s.handler(peerRoles, forbidden)), peerConn)
	go psrv.Serve(tl)
	b.later(func() { psrv.Close() })
	log.Info("peer listener (mutual TLS)", "addr", tl.Addr().String(), "trusted", s.trust.Status() != nil)
	return nil
}

// serve serves the API socket until a signal, then leaves the guests
// running.
func (b *startup) serve() error {
	srv, log := b.srv, b.log
	go func() {
		<-b.ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("serving", "socket", b.cfg.Socket, "state", b.cfg.StateDir, "domains", b.mgr.Count())
	go b.mgr.BootPhase(b.ctx)
	sdNotify("READY=1")
	b.later(func() { sdNotify("STOPPING=1") })
	// Root's own socket: one source, the same cap and timeouts.
	if err := srv.Serve(newGuardedListener(b.raw, "api", maxConns, maxConns, log)); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if b.cgroups != nil {
		b.cgroups.RemoveBase() // only when no domain is left in it
	}
	log.Info("daemon stopped; guests keep running")
	return nil
}
