// Package daemon is `ringfence serve`: it opens the store, probes the host,
// recovers domains, and serves the JSON API on a root-only unix socket.
// It holds no domain logic: every route calls domain.Manager.
package daemon

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
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
	"github.com/ringfence/ringfence/internal/peer"
	"github.com/ringfence/ringfence/internal/storage"
	"github.com/ringfence/ringfence/internal/store"
)

// Version of ringfence.
const Version = "0.1.0"

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
	// QEMUUser is the unprivileged user QEMU runs as; default
	// ringfence-qemu (created by scripts/deps.sh), else nobody.
	QEMUUser string
}

// DefaultStateDir and DefaultRunDir are where a production host keeps things.
const (
	DefaultStateDir = "/var/lib/ringfence"
	DefaultRunDir   = "/run/ringfence"
)

// SocketPath returns the API socket for a run dir.
func SocketPath(runDir string) string { return filepath.Join(runDir, "ringfence.sock") }

// Server is a running daemon.
type Server struct {
	peerTLS *tls.Config // nil until `ringfence host trust` ran
	pools   *storage.Pools
	nets    *netmgr.Manager
	cfg     Config
	mgr     *domain.Manager
	st      store.Store
	info    api.HostInfo
	accel   host.Accel
	log     *slog.Logger
}

// Run serves until SIGINT/SIGTERM. Guests keep running after it returns.
func Run(cfg Config) error {
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.RunDir == "" {
		cfg.RunDir = DefaultRunDir
	}
	if cfg.Socket == "" {
		cfg.Socket = SocketPath(cfg.RunDir)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// QEMUs we start are our children; re-parented ones (after a restart)
	// come to us as subreaper so they are reaped at once, not every few
	// seconds by PID 1.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	for _, d := range []string{cfg.StateDir, cfg.RunDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	st, err := store.OpenBolt(filepath.Join(cfg.StateDir, "state.db"))
	if err != nil {
		return err
	}
	defer st.Close()

	eng := qemu.New(cfg.QEMUBinary)
	if self, err := os.Executable(); err == nil {
		eng.Launcher = launch.Prefix(self)
	}
	qv, err := eng.Version()
	if err != nil {
		return err
	}
	accel := host.ProbeAccel("/proc/cpuinfo", "/dev/kvm")
	switch cfg.Accel {
	case "":
	case "tcg":
		accel = host.Accel{Name: "tcg", Reason: "forced by --accel=tcg"}
	case "kvm":
		if accel.Name != "kvm" {
			return fmt.Errorf("--accel=kvm but %s", accel.Reason)
		}
	default:
		return fmt.Errorf("--accel must be kvm or tcg, not %q", cfg.Accel)
	}
	mem, err := host.ReadMemory()
	if err != nil {
		return fmt.Errorf("reading host memory: %w", err)
	}
	reserve := cfg.ReserveMiB
	if reserve <= 0 {
		reserve = host.DefaultReserve(mem.TotalMiB)
	}
	ledger := host.NewLedger(mem.TotalMiB, reserve, host.CPUs(), cfg.VCPURatio)
	var cgroups *host.Cgroups
	if !cfg.NoCgroups {
		// The default state dir owns "ringfence"; any other (a second
		// daemon on the host, tests) gets its own subtree.
		sub := "ringfence"
		if abs, _ := filepath.Abs(cfg.StateDir); abs != DefaultStateDir {
			sum := sha256.Sum256([]byte(abs))
			sub = "ringfence-" + hex.EncodeToString(sum[:4])
		}
		cgroups, err = host.DetectCgroups(sub)
		if err != nil {
			return fmt.Errorf("%w: resources cannot be guaranteed without cgroups (--no-cgroups runs without them)", err)
		}
		log.Info("cgroups", "version", cgroups.Version)
	}
	runAs, err := qemuUser(cfg.QEMUUser)
	if err != nil {
		return err
	}
	if runAs == "nobody" {
		log.Warn("user ringfence-qemu does not exist; QEMU will run as nobody (scripts/deps.sh creates the dedicated user)")
	}
	nets, err := netmgr.New(context.Background(), st, log)
	if err != nil {
		return fmt.Errorf("loading networks: %w", err)
	}
	mgr := domain.New(domain.Options{Networks: nets, Store: st, Engine: eng, Ledger: ledger, Accel: accel, RunDir: cfg.RunDir, Log: log, RunAs: runAs,
		Cgroups: cgroups, HostCPUs: host.CPUs(), OverheadMiB: cfg.OverheadMiB, TLSDir: filepath.Join(cfg.StateDir, "tls"), StateDir: cfg.StateDir})
	hn, _ := os.Hostname()
	s := &Server{cfg: cfg, mgr: mgr, st: st, accel: accel, log: log, info: api.HostInfo{
		Hostname: hn, CPUs: host.CPUs(), Accel: accel.Name, AccelReason: accel.Reason,
		QEMUVersion: qv, QEMUBinary: eng.Binary, Version: Version, StateDir: cfg.StateDir,
	}}
	s.pools = storage.NewPools(st, mgr.DiskUsers)
	nets.Users = mgr.BridgeUsers
	s.nets = nets
	log.Info("host probed", "accel", accel.Name, "reason", accel.Reason, "qemu", qv)

	ln, err := listen(cfg.Socket)
	if err != nil {
		return err
	}
	defer os.Remove(cfg.Socket)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := mgr.Recover(ctx); err != nil {
		return err
	}
	defer nets.Close()
	if err := nets.Sync(); err != nil {
		// The kernel keeps the previous daemon's rules; say so loudly.
		log.Error("the network filter could not be rendered; the previous rules stay in force", "err", err)
	}
	go mgr.RunSampler(ctx, time.Second)
	if tc, err := peer.Config(peer.Files{Dir: filepath.Join(cfg.StateDir, "tls")}); err == nil {
		s.peerTLS = tc
	} else if cfg.Listen != "" {
		return err
	}
	handler := s.routes(ledger)
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	if cfg.Listen != "" {
		raw, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("peer listener %s: %w", cfg.Listen, err)
		}
		tl := newPeerListener(raw, s.peerTLS, mgr, log)
		psrv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go psrv.Serve(tl)
		defer psrv.Close()
		log.Info("peer listener (mutual TLS)", "addr", tl.Addr().String())
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("serving", "socket", cfg.Socket, "state", cfg.StateDir, "domains", mgr.Count())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if cgroups != nil {
		cgroups.RemoveBase() // only when no domain is left in it
	}
	log.Info("daemon stopped; guests keep running")
	return nil
}

// qemuUser picks the unprivileged user for QEMU.
func qemuUser(want string) (string, error) {
	if want == "root" {
		return "", nil
	}
	if want != "" {
		if _, err := user.Lookup(want); err != nil {
			return "", fmt.Errorf("--qemu-user %s: %w", want, err)
		}
		return want, nil
	}
	for _, u := range []string{"ringfence-qemu", "nobody"} {
		if _, err := user.Lookup(u); err == nil {
			return u, nil
		}
	}
	return "", fmt.Errorf("neither user ringfence-qemu nor nobody exists: create one (useradd --system ringfence-qemu) or pass --qemu-user")
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

func (s *Server) routes(ledger *host.Ledger) http.Handler {
	mux := http.NewServeMux()
	p := api.Version
	mux.HandleFunc("GET "+p+"/host", func(w http.ResponseWriter, r *http.Request) {
		info := s.info
		if mem, err := host.ReadMemory(); err == nil {
			info.MemTotalMiB, info.MemFreeMiB = mem.TotalMiB, mem.AvailableMiB
		}
		info.Domains = s.mgr.Count()
		info.Ledger = ledger.Snapshot()
		reply(w, info, nil)
	})
	mux.HandleFunc("GET "+p+"/domains", func(w http.ResponseWriter, r *http.Request) {
		reply(w, s.mgr.List(), nil)
	})
	mux.HandleFunc("POST "+p+"/domains", func(w http.ResponseWriter, r *http.Request) {
		var req api.CreateRequest
		if err := decode(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		out, err := s.mgr.Create(r.Context(), req)
		reply(w, out, err)
	})
	mux.HandleFunc("GET "+p+"/domains/{name}", func(w http.ResponseWriter, r *http.Request) {
		d, err := s.mgr.Get(r.PathValue("name"))
		reply(w, d, err)
	})
	mux.HandleFunc("POST "+p+"/domains/{name}/{action}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		var err error
		switch r.PathValue("action") {
		case "shutdown":
			var req api.ShutdownRequest
			if err = decode(r, &req); err == nil {
				err = s.mgr.Shutdown(r.Context(), name, req)
			}
		case "reboot":
			err = s.mgr.Reboot(r.Context(), name)
		case "destroy":
			err = s.mgr.Destroy(r.Context(), name)
		case "pause":
			err = s.mgr.Pause(r.Context(), name)
		case "unpause":
			err = s.mgr.Unpause(r.Context(), name)
		case "mem-set", "mem-max":
			var req api.MemRequest
			if err = decode(r, &req); err == nil {
				if r.PathValue("action") == "mem-set" {
					err = s.mgr.MemSet(r.Context(), name, req.MemoryMiB)
				} else {
					err = s.mgr.MemMax(r.Context(), name, req.MemoryMiB)
				}
			}
		case "sched-credit":
			req := api.SchedCreditRequest{Weight: -1, Cap: -1}
			if err = decode(r, &req); err == nil {
				err = s.mgr.SchedCredit(r.Context(), name, req.Weight, req.Cap)
			}
		case "migrate":
			s.migrate(w, r, name)
			return
		case "migrate-cancel":
			err = s.mgr.CancelMigration(name)
		case "save":
			var req api.SaveRequest
			if err = decode(r, &req); err == nil {
				err = s.mgr.Save(r.Context(), name, req.Path, req.Checkpoint)
			}
		case "block-attach", "block-detach", "cd-insert", "cd-eject":
			var req api.BlockRequest
			if err = decode(r, &req); err == nil {
				switch r.PathValue("action") {
				case "block-attach":
					_, err = s.mgr.BlockAttach(r.Context(), name, req.Spec)
				case "block-detach":
					err = s.mgr.BlockDetach(r.Context(), name, req.VDev)
				case "cd-insert":
					if req.Path == "" {
						err = api.Errorf(api.ErrInvalid, "cd-insert needs a file")
					} else {
						err = s.mgr.CDChange(r.Context(), name, req.VDev, req.Path)
					}
				case "cd-eject":
					err = s.mgr.CDChange(r.Context(), name, req.VDev, "")
				}
			}
		case "network-attach", "network-detach":
			var req api.NetworkRequest
			if err = decode(r, &req); err == nil {
				if r.PathValue("action") == "network-attach" {
					_, err = s.mgr.NetworkAttach(r.Context(), name, req.Spec)
				} else {
					err = s.mgr.NetworkDetach(r.Context(), name, req.Dev)
				}
			}
		case "clone":
			var req api.CloneRequest
			if err = decode(r, &req); err == nil {
				var d api.Domain
				if d, err = s.mgr.Clone(r.Context(), name, req.Name, req.Paused); err == nil {
					reply(w, d, nil)
					return
				}
			}
		case "vcpu-pin":
			req := api.VCPUPinRequest{VCPU: -1}
			if err = decode(r, &req); err == nil {
				err = s.mgr.VCPUPin(r.Context(), name, req.VCPU, req.CPUs)
			}
		default:
			err = api.Errorf(api.ErrNotFound, "unknown action %q", r.PathValue("action"))
		}
		if err != nil {
			reply(w, nil, err)
			return
		}
		d, err := s.mgr.Get(name)
		if errors.Is(err, api.ErrNotFound) {
			reply(w, map[string]string{"status": "gone"}, nil)
			return
		}
		reply(w, d, err)
	})
	mux.HandleFunc("GET "+p+"/domains/{name}/console", s.console)
	mux.HandleFunc("POST "+p+"/migrate/incoming", s.incoming)
	mux.HandleFunc("POST "+p+"/migrate/data/{token}", s.incomingData)
	mux.HandleFunc("POST "+p+"/restore", func(w http.ResponseWriter, r *http.Request) {
		var req api.RestoreRequest
		if err := decode(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		d, err := s.mgr.Restore(r.Context(), req.Path, req.Paused)
		reply(w, d, err)
	})
	s.storageRoutes(mux)
	s.snapshotRoutes(mux)
	s.jobRoutes(mux)
	s.blockRoutes(mux)
	s.networkRoutes(mux)
	mux.HandleFunc("GET "+p+"/stats", func(w http.ResponseWriter, r *http.Request) {
		reply(w, s.mgr.Stats(), nil)
	})
	return mux
}

func decode(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		return err
	}
	if len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return api.Errorf(api.ErrInvalid, "request body: %v", err)
	}
	return nil
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code, class := api.StatusOf(err)
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(api.ErrorBody{Error: err.Error(), Class: class})
		return
	}
	json.NewEncoder(w).Encode(v)
}

// console upgrades the request to a raw byte stream: the history, then
// live output; whatever the client sends goes to the guest's serial port.
func (s *Server) console(w http.ResponseWriter, r *http.Request) {
	con, err := s.mgr.Console(r.PathValue("name"))
	if err != nil {
		reply(w, nil, err)
		return
	}
	conn, rw, ok := upgrade(w, "ringfence-console")
	if !ok {
		return
	}
	defer conn.Close()
	hist, ch, detach := con.Attach()
	defer detach()
	if r.URL.Query().Get("history") != "0" {
		conn.Write(hist)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := rw.Read(buf)
			if n > 0 {
				con.Write(buf[:n])
			}
			if err != nil {
				conn.Close()
				return
			}
		}
	}()
	for p := range ch {
		if _, err := conn.Write(p); err != nil {
			return
		}
	}
}
