// Command failover measures HA's failover (issue 21, target: the HA
// guest's QEMU running on a survivor within 15 s of its host being
// powered off or cut off). Three daemons in three network namespaces
// form a cluster; an HA guest runs on one; its host is then powered off
// (daemon, fence guard and QEMU kill -9 together) or cut off (its link
// down), and each phase is timed from the fault: detect (a survivor's
// `cluster status` shows the host down), fence (the cut host killed its
// guest; a powered-off host has nothing to fence), expiry seen, the
// ownership transaction and QEMU started (the survivor's ha.takeover
// event), guest ready (its ready line on the survivor's console). The
// anchor is the lease TTL: no design that waits for the lease to expire
// can restart sooner, so total/TTL is how close to that bound it gets.
//
// Run as root after `make image`: make bench-failover (go run ./bench/failover)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/image"
	"github.com/ringfence/ringfence/tests/chaos"
)

const (
	guest  = "haguest"
	ttl    = 10 * time.Second // the cluster's lease TTL (docs/cluster.md)
	target = 15 * time.Second // issue 21's target
)

// run is one failover, its phases in seconds from the fault (-1: none).
type run struct {
	Scenario string `json:"scenario"`
	From     string `json:"from"`
	// Leader: the failed host ran etcd's leader (a new leader first
	// extends every lease by its TTL: expiry comes later).
	Leader      bool    `json:"etcd_leader"`
	To          string  `json:"to"`
	Detect      float64 `json:"detect_s"`
	Fence       float64 `json:"fence_s"`
	ExpirySeen  float64 `json:"expiry_seen_s"`
	Txn         float64 `json:"ownership_txn_s"`
	QEMUStarted float64 `json:"qemu_started_s"`
	GuestReady  float64 `json:"guest_ready_s"`
	Ratio       float64 `json:"total_over_ttl"`
	Met         bool    `json:"within_target"`
}

// summary is a scenario's medians.
type summary struct {
	Scenario string             `json:"scenario"`
	Runs     int                `json:"runs"`
	Median   map[string]float64 `json:"median_s"`
	Worst    float64            `json:"worst_qemu_started_s"`
	Ratio    float64            `json:"median_total_over_ttl"`
	Met      int                `json:"runs_within_target"`
}

type result struct {
	TTL     float64   `json:"lease_ttl_s"`
	Target  float64   `json:"target_s"`
	Summary []summary `json:"summary"`
	Runs    []run     `json:"runs"`
}

func main() {
	imgDir := flag.String("image", "/var/lib/ringfence/images/default", "default image")
	n := flag.Int("runs", 3, "failovers per scenario")
	flag.Parse()
	res, err := bench(image.PathsIn(*imgDir), *n)
	benchenv.Report("failover", res, err)
}

func bench(img image.Paths, n int) (res result, err error) {
	res = result{TTL: ttl.Seconds(), Target: target.Seconds()}
	l, err := newLab(img.Dir)
	defer l.undo.Run()
	if err != nil {
		return res, err
	}
	if err := l.bootGuest(img); err != nil {
		return res, err
	}
	for _, kind := range []chaos.Kind{chaos.Kill, chaos.Cut} {
		var runs []run
		for i := 0; i < n; i++ {
			r, err := l.failover(kind)
			if err != nil {
				return res, fmt.Errorf("%s run %d: %w", kind, i+1, err)
			}
			fmt.Fprintf(os.Stderr, "%s %s->%s (leader %v): detect %.1f fence %.1f expiry %.1f txn %.1f qemu %.1f ready %.1f s\n",
				r.Scenario, r.From, r.To, r.Leader, r.Detect, r.Fence, r.ExpirySeen, r.Txn, r.QEMUStarted, r.GuestReady)
			runs = append(runs, r)
		}
		res.Runs = append(res.Runs, runs...)
		// Apart: a failed etcd leader's leases are first extended by
		// the new leader (etcd renews every lease on a leader change).
		for _, lead := range []bool{false, true} {
			var sub []run
			for _, r := range runs {
				if r.Leader == lead {
					sub = append(sub, r)
				}
			}
			if len(sub) > 0 {
				res.Summary = append(res.Summary, summarize(fmt.Sprintf("%s, etcd leader %v", kind, lead), sub))
			}
		}
	}
	return res, nil
}

// bootGuest declares the cluster pool on every host and boots the HA
// guest on alpha.
func (l *lab) bootGuest(img image.Paths) error {
	pool := filepath.Join(filepath.Dir(l.hosts[0].dir), "pool")
	// Declared once, made on every host by the cluster.
	if _, err := l.hosts[0].cli("pool", "create", "hapool", "--dir", pool, "--cluster"); err != nil {
		return err
	}
	for _, h := range l.hosts {
		for end := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			if out, _ := h.cli("pool", "list"); strings.Contains(out, pool) {
				break
			}
			if time.Now().After(end) {
				return fmt.Errorf("%s: the cluster pool hapool was not made there within 30 s", h.name)
			}
		}
	}
	disk := filepath.Join(pool, "disk.img")
	if err := chaos.MakeWriterDisk(disk, 16); err != nil {
		return err
	}
	cfg := filepath.Join(l.hosts[0].dir, guest+".cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf("name = %q\nkernel = %q\nramdisk = %q\nmemory = 128\nvcpus = 1\nextra = \"console=hvc0\"\nha = 1\ndisk = [ 'file:%s,xvda,w' ]\n",
		guest, img.Kernel, img.Initrd, disk)), 0o644)
	if _, err := l.hosts[0].cli("create", cfg, "--host", l.hosts[0].name); err != nil {
		return err
	}
	_, err := l.ready(l.hosts[0])
	return err
}

// ready waits for the guest's ready line on h's console.
func (l *lab) ready(h *host) (time.Time, error) {
	conn, err := h.c.Console(context.Background(), guest, true)
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close()
	_, err = benchenv.NewConsole(conn, conn).WaitFor(image.ReadyLine, 0, 2*time.Minute)
	return time.Now(), err
}

// owner is the host running the guest's QEMU.
func (l *lab) owner() (*host, error) {
	for _, h := range l.hosts {
		if h.qemu() != 0 {
			return h, nil
		}
	}
	return nil, fmt.Errorf("no host runs %s", guest)
}

// failover faults the guest's host and times the takeover, then heals
// the host and waits for the cluster to be whole again.
func (l *lab) failover(kind chaos.Kind) (run, error) {
	from, err := l.owner()
	if err != nil {
		return run{}, err
	}
	lead, _ := l.cl.Leader()
	r := run{Scenario: string(kind), From: from.name, Leader: lead == from.idx-1, Detect: -1, Fence: -1, ExpirySeen: -1, Txn: -1, QEMUStarted: -1, GuestReady: -1}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs := make(chan api.Event, 16)
	for _, h := range l.hosts {
		h.follow(ctx, evs)
	}
	time.Sleep(500 * time.Millisecond) // the streams are open
	hit, heal, err := l.cl.Inject(chaos.Fault{Kind: kind, Host: from.idx - 1})
	if err != nil {
		return r, err
	}
	t0 := hit.At
	since := func(t time.Time) float64 { return t.Sub(t0).Seconds() }
	to, err := l.watch(ctx, from, evs, &r, since)
	if err == nil {
		var at time.Time
		if at, err = l.ready(to); err == nil {
			r.GuestReady = since(at)
		}
	}
	if herr := heal(); err == nil {
		err = herr
	}
	if err == nil {
		err = l.whole()
	}
	l.drain(evs, &r, since, 5*time.Second) // a cut host's fence, said on its own socket
	r.Ratio = r.QEMUStarted / ttl.Seconds()
	r.Met = r.QEMUStarted >= 0 && r.QEMUStarted <= target.Seconds()
	return r, err
}

// watch times the phases until the survivor's takeover event.
func (l *lab) watch(ctx context.Context, from *host, evs <-chan api.Event, r *run, since func(time.Time) float64) (*host, error) {
	deadline := time.After(2 * time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	survivor := l.hosts[from.idx%len(l.hosts)]
	for {
		select {
		case ev := <-evs:
			if to := l.phase(ev, r, since); to != nil {
				return to, nil
			}
		case <-tick.C:
			if r.Detect < 0 {
				if st, err := survivor.c.ClusterStatus(ctx); err == nil && down(st, from.name) {
					r.Detect = since(time.Now())
				}
			}
		case <-deadline:
			return nil, fmt.Errorf("no takeover of %s within 2 minutes of the %s of %s", guest, r.Scenario, from.name)
		}
	}
}

// phase records what an HA event says; the takeover's new host ends it.
func (l *lab) phase(ev api.Event, r *run, since func(time.Time) float64) *host {
	ns := func(n int64) float64 { return since(time.Unix(0, n)) }
	switch ev.Action {
	case api.EvHAFenced:
		var f api.HAFenced
		if json.Unmarshal([]byte(ev.Detail), &f) == nil && r.Fence < 0 {
			r.Fence = ns(f.AtNs)
		}
	case api.EvHATakeover:
		var tk api.HATakeover
		if json.Unmarshal([]byte(ev.Detail), &tk) != nil || tk.Domain != guest {
			return nil
		}
		r.To, r.ExpirySeen, r.Txn, r.QEMUStarted = tk.To, ns(tk.ExpirySeenNs), ns(tk.TxnNs), ns(tk.QEMUStarted)
		for _, h := range l.hosts {
			if h.name == tk.To {
				return h
			}
		}
	}
	return nil
}

// drain reads the events still coming for a while (a fence after the
// takeover).
func (l *lab) drain(evs <-chan api.Event, r *run, since func(time.Time) float64, d time.Duration) {
	end := time.After(d)
	for {
		select {
		case ev := <-evs:
			l.phase(ev, r, since)
		case <-end:
			return
		}
	}
}

func down(st api.ClusterStatus, name string) bool {
	for _, h := range st.Hosts {
		if h.Name == name {
			return !h.Alive
		}
	}
	return false
}

// whole waits until every host sees every host up.
func (l *lab) whole() error {
	var want []string
	for _, h := range l.hosts {
		want = append(want, h.name+":member:true:true")
	}
	for _, h := range l.hosts {
		if err := chaos.AwaitHosts(h.cli, strings.Join(want, " "), 3*time.Minute); err != nil {
			return err
		}
	}
	return nil
}

func summarize(scenario string, runs []run) summary {
	s := summary{Scenario: scenario, Runs: len(runs), Median: map[string]float64{}}
	pick := map[string]func(run) float64{
		"detect": func(r run) float64 { return r.Detect }, "fence": func(r run) float64 { return r.Fence },
		"expiry_seen": func(r run) float64 { return r.ExpirySeen }, "ownership_txn": func(r run) float64 { return r.Txn },
		"qemu_started": func(r run) float64 { return r.QEMUStarted }, "guest_ready": func(r run) float64 { return r.GuestReady },
	}
	for name, f := range pick {
		var xs []float64
		for _, r := range runs {
			if v := f(r); v >= 0 {
				xs = append(xs, v)
			}
		}
		if len(xs) > 0 {
			s.Median[name] = median(xs)
		}
	}
	for _, r := range runs {
		s.Worst = max(s.Worst, r.QEMUStarted)
		if r.Met {
			s.Met++
		}
	}
	s.Ratio = s.Median["qemu_started"] / ttl.Seconds()
	return s
}

func median(xs []float64) float64 {
	sort.Float64s(xs)
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}
