package chaos

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Host is one test host as the faults see it (the e2e Env and the
// benchmark's daemon each stand behind it).
type Host interface {
	Name() string     // its peer name: alpha, beta, ...
	Index() int       // its place in the Net, 1-based
	StateDir() string // its daemon's state dir (STATE/tls has its identity)
	Procs() []int     // every process of the host: daemon, fence guard, QEMUs
	Restart() error   // starts its daemon again after a kill
}

// Kind is a kind of fault.
type Kind string

const (
	// Kill is a power-off: daemon, fence guard and QEMUs SIGKILLed at
	// once (all stopped first, so none sees another die and acts).
	Kill Kind = "kill"
	// Cut is a pulled cable: the host's link down both ways.
	Cut Kind = "cut"
	// CutIn and CutOut are asymmetric cuts: the host hears nothing from
	// the others (it still sends), or the others hear nothing from it.
	CutIn  Kind = "cut-in"
	CutOut Kind = "cut-out"
	// Stop is the daemon hung: SIGSTOP, then SIGCONT after the hold (its
	// fence guard and QEMUs run on).
	Stop Kind = "sigstop"
	// Leader kills the etcd leader's host (a Kill on whichever host
	// leads at the time).
	Leader Kind = "leader"
	// Freeze is the clock jump: a real jump of the shared machine's clock
	// would hit every other session on it, and a time namespace only sets
	// an offset at a process's start. So the whole host is frozen
	// (SIGSTOP of daemon, guard and QEMUs) past the lease and resumed:
	// every clock it reads, monotonic and wall, jumps forward at once,
	// as for a host suspended and woken.
	Freeze Kind = "freeze"
)

// Kinds is every fault kind, the soak's random mix.
var Kinds = []Kind{Kill, Cut, CutIn, CutOut, Stop, Leader, Freeze}

// Fault is one fault: its kind, the host it hits (0-based; Leader
// resolves its own) and how long it lasts before it is healed.
type Fault struct {
	Kind Kind
	Host int
	Hold time.Duration
}

// Cluster is the test cluster the faults hit.
type Cluster struct {
	Net   *Net
	Hosts []Host
}

// Hit is a fault applied: the host it hit and when.
type Hit struct {
	Fault
	At time.Time
}

// Inject applies f; heal undoes it (restarts a killed host's daemon,
// brings a link up, resumes a stopped process).
func (c *Cluster) Inject(f Fault) (hit Hit, heal func() error, err error) {
	if f.Kind == Leader {
		if f.Host, err = c.Leader(); err != nil {
			return hit, nil, err
		}
	}
	if f.Host < 0 || f.Host >= len(c.Hosts) {
		return hit, nil, fmt.Errorf("fault on host %d: the cluster has %d", f.Host, len(c.Hosts))
	}
	h := c.Hosts[f.Host]
	hit = Hit{Fault: f, At: time.Now()}
	switch f.Kind {
	case Kill, Leader:
		signalAll(h.Procs(), syscall.SIGSTOP, syscall.SIGKILL)
		return hit, h.Restart, nil
	case Cut:
		return hit, func() error { return c.Net.Heal(h.Index()) }, c.Net.Cut(h.Index())
	case CutIn, CutOut:
		return hit, func() error { return c.Net.Heal(h.Index()) }, c.Net.CutOneWay(h.Index(), f.Kind == CutIn)
	case Stop:
		p := h.Procs()
		if len(p) == 0 {
			return hit, nil, fmt.Errorf("%s has no daemon to stop", h.Name())
		}
		d := p[:1] // Procs lists the daemon first
		signalAll(d, syscall.SIGSTOP)
		return hit, func() error { signalAll(d, syscall.SIGCONT); return nil }, nil
	case Freeze:
		p := h.Procs()
		signalAll(p, syscall.SIGSTOP)
		return hit, func() error { signalAll(p, syscall.SIGCONT); return nil }, nil
	}
	return hit, nil, fmt.Errorf("unknown fault kind %q (kinds: %v)", f.Kind, Kinds)
}

// signalAll sends each signal to every process, one signal at a time.
func signalAll(pids []int, sigs ...syscall.Signal) {
	for _, s := range sigs {
		for _, p := range pids {
			syscall.Kill(p, s)
		}
	}
}

// Plan draws n faults: kinds uniformly from Kinds; one time in three
// any host, else Host -1, which the caller resolves to the host it aims
// at (the soak: the HA guest's owner at the time); holds between
// minHold and maxHold.
func Plan(r *rand.Rand, n, hosts int, minHold, maxHold time.Duration) []Fault {
	var out []Fault
	for i := 0; i < n; i++ {
		f := Fault{Kind: Kinds[r.IntN(len(Kinds))], Host: -1, Hold: minHold}
		if maxHold > minHold {
			f.Hold += time.Duration(r.Int64N(int64(maxHold - minHold)))
		}
		if r.IntN(3) == 0 {
			f.Host = r.IntN(hosts)
		}
		out = append(out, f)
	}
	return out
}

// HostProcs is every process of a host: its daemon first, then every
// process whose command line names a path under dir (its fence guard,
// launchers and QEMUs run on its state and run dirs) or whose parent is
// one of them.
func HostProcs(daemon int, dir string) []int {
	out := []int{daemon}
	in := map[int]bool{daemon: true}
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == daemon {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			// pid (comm) state ppid ...: comm may hold spaces.
			if f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:])); len(f) > 1 {
				parent[pid], _ = strconv.Atoi(f[1])
			}
		}
		if cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && strings.Contains(string(cmd), dir+"/") {
			in[pid] = true
			out = append(out, pid)
		}
	}
	// Children of the daemon or of its processes, whatever they run.
	for grew := true; grew; {
		grew = false
		for pid, pp := range parent {
			if !in[pid] && in[pp] {
				in[pid], grew = true, true
				out = append(out, pid)
			}
		}
	}
	return out
}

// Leader is the host whose etcd member leads (asked of each member's
// metrics over its own TLS identity, from its own namespace).
func (c *Cluster) Leader() (int, error) {
	var errs []string
	for i, h := range c.Hosts {
		lead, err := c.isLeader(h)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", h.Name(), err))
			continue
		}
		if lead {
			return i, nil
		}
	}
	return -1, fmt.Errorf("no etcd member says it leads (%s)", strings.Join(errs, "; "))
}

func (c *Cluster) isLeader(h Host) (bool, error) {
	tlsDir := filepath.Join(h.StateDir(), "tls")
	cert, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, "host.pem"), filepath.Join(tlsDir, "host.pem"))
	if err != nil {
		return false, err
	}
	ca, err := os.ReadFile(filepath.Join(tlsDir, "ca.pem"))
	if err != nil {
		return false, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	w, stop, err := startWorkers(c.Net.Hosts[h.Index()-1], 1)
	if err != nil {
		return false, err
	}
	defer stop()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13},
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			w.run(func() { conn, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr) })
			return conn, err
		},
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 3 * time.Second}
	resp, err := cl.Get(fmt.Sprintf("https://%s:2379/metrics", c.Net.Addr(h.Index())))
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "etcd_server_is_leader "); ok {
			return strings.TrimSpace(v) == "1", nil
		}
	}
	return false, fmt.Errorf("its metrics have no etcd_server_is_leader")
}
