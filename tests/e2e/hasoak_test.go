package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/image"
	"github.com/ringfence/ringfence/tests/chaos"
)

// haHost is an Env as the faults see it.
type haHost struct {
	e    *Env
	name string
	idx  int
}

func (h haHost) Name() string     { return h.name }
func (h haHost) Index() int       { return h.idx }
func (h haHost) StateDir() string { return h.e.State }
func (h haHost) Procs() []int {
	if h.e.daemon == nil {
		return nil
	}
	return chaos.HostProcs(h.e.daemon.Process.Pid, h.e.Dir)
}

// Restart starts the daemon again once the killed one is reaped.
func (h haHost) Restart() error {
	if h.e.daemon != nil {
		<-h.e.daemonDone
	}
	h.e.StartDaemon()
	return nil
}

// haLab is the three-host cluster with one HA guest, the writer, on a
// cluster pool every host sees at the same path.
type haLab struct {
	t     *testing.T
	envs  []*Env
	names []string
	cl    *chaos.Cluster
	disk  string
	owner int // the host running the guest (index into envs)
	pid   int // its QEMU
	ran   []string
	lost  int // fenced and never restarted by HA (restarted by hand)
	mon   *overlapMonitor
}

const soakGuest = "hawriter"

// newHALab forms the cluster (before runs between the namespaces and the
// daemons: the lossy run puts its proxies in there), declares the
// cluster pool on every host and boots the writer on alpha.
func newHALab(t *testing.T, before func(*clusterNet)) *haLab {
	cn, envs := formClusterWith(t, 3, false, before)
	l := &haLab{t: t, envs: envs, names: chaos.Names[:3], cl: &chaos.Cluster{Net: cn.Net}}
	for i, e := range envs {
		l.cl.Hosts = append(l.cl.Hosts, haHost{e: e, name: l.names[i], idx: i + 1})
	}
	dir := sharedPool(t, envs)
	l.disk = filepath.Join(dir, "writer.img")
	if err := chaos.MakeWriterDisk(l.disk, 256); err != nil {
		t.Fatal(err)
	}
	a := envs[0]
	a.MustRF("create", a.WriteConfig(soakGuest, fmt.Sprintf("ha = 1\npersistent = 1\ndisk = [ 'file:%s,xvda,w' ]", l.disk)), "--host", "alpha")
	l.mon = watchOverlaps(envs)
	t.Cleanup(l.mon.stop)
	l.owner, l.pid = -1, 0
	l.settle(3 * time.Minute)
	return l
}

// where is the host running the guest's QEMU now (-1: none, or more
// than one), and its pid.
func (l *haLab) where() (int, int) {
	at, pid := -1, 0
	for i, e := range l.envs {
		if q := e.QEMUs(); len(q) == 1 && at == -1 {
			at, pid = i, q[0]
		} else if len(q) > 0 {
			return -1, 0
		}
	}
	return at, pid
}

// whole says whether every host sees every host up.
func (l *haLab) whole() bool {
	want := "alpha:member:true:true beta:member:true:true gamma:member:true:true"
	for _, e := range l.envs {
		r := e.RF("cluster", "status", "--json")
		var st api.ClusterStatus
		if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &st) != nil || hostsLine(st) != want {
			return false
		}
	}
	return true
}

// settle waits for the cluster to be whole and the guest to run on
// exactly one host; a new incarnation gets its writer started.
func (l *haLab) settle(timeout time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	var nowhere time.Time // since when the whole cluster runs the guest nowhere
	for {
		at, pid := l.where()
		whole := l.whole()
		if at >= 0 && whole {
			if at != l.owner || pid != l.pid {
				l.startWriter(at)
				l.owner, l.pid = at, pid
			}
			return
		}
		switch {
		case at >= 0 || !whole || l.pid == 0:
			nowhere = time.Time{}
		case nowhere.IsZero():
			nowhere = time.Now()
		case time.Since(nowhere) > 90*time.Second:
			l.restartLost()
			nowhere = time.Time{}
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for i, e := range l.envs {
				fmt.Fprintf(&logs, "--- %s (QEMUs %v):\n%s\n", l.names[i], e.QEMUs(), tail(e.DaemonLog(), 2500))
			}
			at, _ := l.where()
			state := "runs on no host"
			if at >= 0 {
				state = "runs on " + l.names[at] + ", but not every host sees every host up"
			}
			l.t.Fatalf("after %s the guest %s (a fence that nobody followed with a takeover, or a cluster that did not heal)\n%s", timeout, state, logs.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// restartLost: the guest was fenced and, 90 s on, with the cluster
// whole, no host runs it: HA lost it (a failure of the test), and the
// soak starts it again by hand to go on proving there is no double run.
func (l *haLab) restartLost() {
	l.t.Helper()
	l.lost++
	msg := fmt.Sprintf("the guest, last on %s, was fenced and no host restarted it within 90 s of the cluster being whole again (HA lost it; started again by hand)", l.names[l.owner])
	if os.Getenv("RINGFENCE_HA_FAULTS") == "" {
		// CI's short form proves the safety half (never twice); a lost
		// guest is issue 21's open defect (docs/cluster.md "Left out"),
		// a failure of `make soak-ha`.
		l.t.Log("KNOWN DEFECT (issue 21, lost guest): " + msg)
	} else {
		l.t.Error(msg)
	}
	for _, e := range l.envs {
		if e.RF("start", soakGuest).Code == 0 {
			return
		}
	}
	l.t.Fatalf("no host could start the lost guest again")
}

// startWriter waits for the incarnation on host at to be up and starts
// its writer, as that host's.
func (l *haLab) startWriter(at int) {
	l.t.Helper()
	c := l.envs[at].Console(soakGuest)
	c.WaitFor(image.ReadyLine, 0, 90*time.Second)
	c.Do("echo up-$((6*7))", "up-42", 30*time.Second)
	from := len(c.Output())
	c.Send(chaos.WriterStart(l.names[at]))
	c.WaitFor(chaos.WriterStarted+l.names[at], from, 60*time.Second)
	l.ran = append(l.ran, l.names[at])
}

// verify ends the run: the guest destroyed, its disk must show the
// incarnations one after another, on the hosts seen, and no two QEMUs
// of it may ever have run at once.
func (l *haLab) verify() chaos.Verdict {
	l.t.Helper()
	// Stopped wherever it runs (a late fence may have stopped it already).
	for _, e := range l.envs {
		if len(e.QEMUs()) > 0 {
			e.MustRF("destroy", soakGuest)
		}
	}
	l.mon.stop()
	v, err := chaos.VerifyDisk(l.disk)
	if err != nil {
		l.t.Fatal(err)
	}
	if !v.OK() {
		l.t.Errorf("the writer's disk shows two writers: %s", v)
	}
	// An incarnation killed before its first record leaves none: the
	// disk's hosts are the hosts seen, in order, some perhaps left out.
	if !subsequence(v.Hosts(), l.ran) {
		l.t.Errorf("incarnations on the disk ran on %q, not in the order of the hosts seen running it, %q", v.Hosts(), l.ran)
	}
	if d := l.mon.doubles(); len(d) > 0 {
		l.t.Errorf("two QEMUs of the guest ran at once: %s", strings.Join(d, "; "))
	}
	return v
}

// subsequence says whether sub is seq with some elements left out.
func subsequence(sub, seq []string) bool {
	i := 0
	for _, x := range seq {
		if i < len(sub) && sub[i] == x {
			i++
		}
	}
	return i == len(sub)
}

// overlapMonitor samples every host's QEMUs: two running (not stopped)
// at once anywhere is a double run.
type overlapMonitor struct {
	mu      sync.Mutex
	found   []string
	samples int
	quit    chan struct{}
	once    sync.Once
	done    chan struct{}
}

func watchOverlaps(envs []*Env) *overlapMonitor {
	m := &overlapMonitor{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			select {
			case <-m.quit:
				return
			case <-time.After(100 * time.Millisecond):
			}
			var running []string
			for _, e := range envs {
				for _, pid := range e.QEMUs() {
					if procState(pid) != "T" {
						running = append(running, fmt.Sprintf("%s pid %d", filepath.Base(e.Dir), pid))
					}
				}
			}
			m.mu.Lock()
			m.samples++
			if len(running) > 1 {
				m.found = append(m.found, time.Now().Format("15:04:05.000")+" "+strings.Join(running, ", "))
			}
			m.mu.Unlock()
		}
	}()
	return m
}

func (m *overlapMonitor) stop() { m.once.Do(func() { close(m.quit) }); <-m.done }

func (m *overlapMonitor) doubles() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.found
}

// procState is a process's state letter ("" if it is gone).
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return f[0]
}

// haEvents is every HA event a host still holds.
func haEvents(e *Env) []api.Event {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var evs []api.Event
	e.Client.Events(ctx, 0, func(ev api.Event) error {
		if ev.Type == api.EventHA {
			evs = append(evs, ev)
		}
		return nil
	})
	return evs
}

// soakFaults is how many faults the soak injects (make soak-ha: 200).
func soakFaults(t *testing.T) int {
	n := 6
	if s := os.Getenv("RINGFENCE_HA_FAULTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("RINGFENCE_HA_FAULTS=%q: want a number of faults", s)
		}
	}
	return n
}

// TestClusterHASoakShort: the HA guest writes (host, boot, seq) to its
// disk on the cluster pool through a random mix of faults (host kill -9
// of daemon, guard and QEMUs; link cut; one-way cuts; daemon SIGSTOP;
// the etcd leader's host killed; a host frozen, its clocks jumping on
// resume), each held 3-18 s, most aimed at the guest's owner; after
// each the cluster must heal with the guest on one host. The disk must
// show the incarnations strictly one after another, and no two QEMUs of
// it may ever run at once. CI runs 6 faults; make soak-ha runs 200.
func TestClusterHASoakShort(t *testing.T) {
	n := soakFaults(t)
	l := newHALab(t, nil)
	seed := uint64(time.Now().UnixNano())
	t.Logf("fault seed %d", seed)
	faults := chaos.Plan(rand.New(rand.NewPCG(seed, 21)), n, 3, 3*time.Second, 18*time.Second)
	counts := map[string]int{}
	var failovers []string
	for i, f := range faults {
		if f.Host < 0 {
			f.Host = l.owner
		}
		before := l.owner
		hit, heal, err := l.cl.Inject(f)
		if err != nil {
			t.Fatalf("fault %d (%s): %v", i+1, f.Kind, err)
		}
		t.Logf("fault %d: %s on %s for %s", i+1, f.Kind, l.names[hit.Host], f.Hold.Round(time.Second))
		time.Sleep(f.Hold)
		if err := heal(); err != nil {
			t.Fatalf("healing fault %d (%s on %s): %v", i+1, f.Kind, l.names[hit.Host], err)
		}
		// A fence the fault made due comes by its deadline (7 s after
		// the last renewal): settle after it, not before.
		time.Sleep(8 * time.Second)
		l.settle(4 * time.Minute)
		counts[string(f.Kind)]++
		line := fmt.Sprintf("%d %s on %s held %s: guest %s -> %s", i+1, f.Kind, l.names[hit.Host], f.Hold.Round(time.Second), l.names[before], l.names[l.owner])
		if l.owner != before {
			failovers = append(failovers, line)
		}
		t.Log(line)
	}
	v := l.verify()
	var kinds []string
	for k, c := range counts {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, c))
	}
	sort.Strings(kinds)
	var fenced, takeovers int
	for _, e := range l.envs {
		for _, ev := range haEvents(e) {
			switch ev.Action {
			case api.EvHAFenced:
				fenced++
			case api.EvHATakeover:
				takeovers++
			}
		}
	}
	t.Logf("soak: %d faults (%s), %d failovers, %d guests lost by HA, %d fence and %d takeover events still held; %s; %d monitor samples, %d double runs",
		n, strings.Join(kinds, ", "), len(failovers), l.lost, fenced, takeovers, v, l.mon.samples, len(l.mon.doubles()))
}

// lossyFor is how long the lossy run lasts (make soak-ha-lossy: 10m).
func lossyFor(t *testing.T) time.Duration {
	d := 60 * time.Second
	if s := os.Getenv("RINGFENCE_HA_LOSSY"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d <= 0 {
			t.Fatalf("RINGFENCE_HA_LOSSY=%q: want a duration (10m)", s)
		}
	}
	return d
}

// TestClusterHALossy: every host's cluster link (etcd peer and client
// traffic, the peer channel) goes through the lossy proxy (delays of
// 5-60 ms, spikes of 0.5 s, stalls of 1 s, connections cut) while the
// HA guest writes: no host may fence, the guest must stay where it is
// (the same QEMU), and the cluster must stay whole. The proxies are put
// in before the daemons start, on a clean link, so every connection
// goes through them; the link turns lossy once the guest writes.
func TestClusterHALossy(t *testing.T) {
	d := lossyFor(t)
	var proxies []*chaos.Proxy
	l := newHALab(t, func(cn *clusterNet) {
		for i, ns := range cn.Hosts {
			p, err := chaos.StartProxy(ns, chaos.Subnet, cn.Addr(i+1), []int{2379, 2380, 7443}, chaos.Link{}, uint64(i+1))
			if err != nil {
				t.Fatal(err)
			}
			proxies = append(proxies, p)
			t.Cleanup(func() { p.Close() })
		}
	})
	for _, p := range proxies {
		if err := p.SetLink(chaos.Lossy); err != nil {
			t.Fatal(err)
		}
	}
	owner, pid := l.owner, l.pid
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		time.Sleep(5 * time.Second)
		if at, p := l.where(); at != owner || p != pid {
			t.Fatalf("on the lossy link the guest moved or stopped: host %d pid %d, was %s pid %d", at, p, l.names[owner], pid)
		}
	}
	var stats []string
	var cuts int64
	for i, p := range proxies {
		s := p.Stats()
		cuts += s.Drops
		stats = append(stats, l.names[i]+": "+s.String())
	}
	t.Logf("lossy link for %s:\n%s", d, strings.Join(stats, "\n"))
	if cuts == 0 {
		t.Errorf("the proxies cut no connection in %s: the link was not lossy", d)
	}
	for i, e := range l.envs {
		for _, ev := range haEvents(e) {
			if ev.Action == api.EvHAFenced || ev.Action == api.EvHATakeover {
				t.Errorf("%s: %s on a lossy but working link: %s", l.names[i], ev.Action, ev.Detail)
			}
		}
	}
	l.settle(time.Minute) // whole, the same guest
	if l.pid != pid {
		t.Errorf("the guest was restarted during the lossy run")
	}
	t.Logf("lossy run: %s", l.verify())
}
