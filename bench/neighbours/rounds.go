package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// variant is one row of the table: a scenario on one side under one set
// of controls.
type variant struct {
	scenario, side, name string
	victim, neigh        *guest
	sampler              sampler
	setup                func() error // the controls, before the first round
	misbehave            func() error // the neighbour starts its worst
	calm                 func() error // the neighbour stops (idle again)
	// after runs after each round with the neighbour (an OOM to wait
	// for, a killed guest to start again); it may add notes.
	after    func(r *result) error
	teardown func()                             // undoes setup's host changes (nil: none)
	victimM  func() (map[string]float64, error) // the victim's measurement
	// guarded: Ringfence's controls for this scenario are in force, so
	// the targets apply.
	guarded bool
	smoke   bool // one of the short (CI) run's rows
}

// result is a variant's figures: the victim's per round, alone and with
// the neighbour misbehaving, and the guests' top figures sampled while
// it did.
type result struct {
	Scenario string               `json:"scenario"`
	Side     string               `json:"side"`
	Variant  string               `json:"variant"`
	Guarded  bool                 `json:"guarded"`
	Alone    map[string][]float64 `json:"alone"`
	With     map[string][]float64 `json:"with"`
	// Top: medians of the 1 s samples while the neighbour misbehaved
	// (and, for the victim, while it was alone): steal and CPU in %,
	// the neighbour's disk writes per second and transmit Mbit/s.
	Top   map[string]float64    `json:"top"`
	Notes []string              `json:"notes,omitempty"`
	Load  float64               `json:"load1"` // the host's 1-minute load average as the variant began
	snaps map[bool][][]snapshot // per round
}

// measure runs a variant's rounds: alone then with, with then alone, and
// so on, so drift on the host hits both sides of the ratio alike.
func (b *bench) measure(v variant) (result, error) {
	r := result{Scenario: v.scenario, Side: v.side, Variant: v.name, Guarded: v.guarded,
		Alone: map[string][]float64{}, With: map[string][]float64{}, Top: map[string]float64{}, snaps: map[bool][][]snapshot{}, Load: load1()}
	if err := b.only(v.victim, v.neigh); err != nil {
		return r, err
	}
	if err := v.setup(); err != nil {
		return r, fmt.Errorf("setting the controls: %w", err)
	}
	if v.teardown != nil {
		defer v.teardown()
	}
	for i := 0; i < b.s.rounds; i++ {
		for _, with := range []bool{i%2 == 1, i%2 == 0} {
			if err := b.round(v, &r, with); err != nil {
				return r, err
			}
		}
	}
	r.summarize(v)
	return r, nil
}

// round is one measurement of the victim, with or without the neighbour
// misbehaving, the side's top sampled meanwhile.
func (b *bench) round(v variant, r *result, with bool) error {
	if with {
		if err := v.misbehave(); err != nil {
			return fmt.Errorf("starting the neighbour: %w", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	w := b.watch(v)
	figs, err := v.victimM()
	r.snaps[with] = append(r.snaps[with], fresh(w.stop()))
	if with && err == nil {
		if v.after != nil {
			err = v.after(r)
		}
		if cerr := v.calm(); cerr != nil && err == nil {
			err = fmt.Errorf("stopping the neighbour: %w", cerr)
		}
	}
	if err != nil {
		return err
	}
	into := r.Alone
	if with {
		into = r.With
	}
	for k, x := range figs {
		into[k] = append(into[k], x)
	}
	return nil
}

// window samples a side's figures every second until stopped.
type window struct {
	quit  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	snaps []snapshot
}

// watch samples v's side, and what the neighbour's floods delivered to
// the peer.
func (b *bench) watch(v variant) *window {
	w := &window{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		v.sampler.stream(w.quit, func(snap snapshot) {
			if f, ok := snap.g[v.neigh.name]; ok {
				f.delivered = b.delivered(v.neigh.ip)
				snap.g[v.neigh.name] = f
			}
			w.mu.Lock()
			w.snaps = append(w.snaps, snap)
			w.mu.Unlock()
		})
	}()
	return w
}

func (w *window) stop() []snapshot {
	close(w.quit)
	<-w.done
	return w.snaps
}

// summarize turns the samples into the top figures: the victim's steal
// alone and with, the neighbour's steal and CPU while it misbehaved, and
// its rates over each round: disk writes, what it sent (top's NETTX:
// offered, before any shaping) and what reached the peer.
func (r *result) summarize(v variant) {
	name := map[bool]string{false: "victim_steal_alone", true: "victim_steal_with"}
	for _, with := range []bool{false, true} {
		var steal []float64
		for _, round := range r.snaps[with] {
			for _, s := range round[min(1, len(round)):] { // the first covers the second before
				if f, ok := s.g[v.victim.name]; ok {
					steal = append(steal, f.stealPct)
				}
			}
		}
		r.Top[name[with]] = median(steal)
	}
	var steal, cpu, iops, mbit, deliv []float64
	for _, round := range r.snaps[true] {
		for _, s := range round[min(1, len(round)):] {
			if f, ok := s.g[v.neigh.name]; ok {
				steal, cpu = append(steal, f.stealPct), append(cpu, f.cpuPct)
			}
		}
		if len(round) < 2 {
			continue
		}
		a, z := round[0].g[v.neigh.name], round[len(round)-1].g[v.neigh.name]
		if dt := round[len(round)-1].t.Sub(round[0].t).Seconds(); dt >= 0.8 {
			iops = append(iops, float64(z.wrOps-a.wrOps)/dt)
			mbit = append(mbit, float64(z.txBytes-a.txBytes)*8/1e6/dt)
			deliv = append(deliv, float64(z.delivered-a.delivered)*8/1e6/dt)
		}
	}
	r.Top["neighbour_steal"], r.Top["neighbour_cpu"] = median(steal), median(cpu)
	r.Top["neighbour_iops"], r.Top["neighbour_mbit"], r.Top["neighbour_delivered_mbit"] = median(iops), median(mbit), median(deliv)
}

// fresh drops repeated samples (the daemon refreshes its figures once a
// second; a poll may see the same one twice).
func fresh(snaps []snapshot) []snapshot {
	var out []snapshot
	seen := map[time.Time]bool{}
	for _, s := range snaps {
		if !seen[s.t] {
			seen[s.t] = true
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].t.Before(out[j].t) })
	return out
}

// ratio is the median of the rounds' ratios, each round's figure with
// the neighbour over its figure alone: the two were measured back to
// back, so what else the host did in between weighs on both.
func (r result) ratio(metric string) float64 {
	a, w := r.Alone[metric], r.With[metric]
	var rs []float64
	for i := 0; i < len(a) && i < len(w); i++ {
		if a[i] > 0 {
			rs = append(rs, w[i]/a[i])
		}
	}
	return median(rs)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func sum(v []float64) float64 {
	t := 0.0
	for _, x := range v {
		t += x
	}
	return t
}

func (r *result) note(format string, a ...any) {
	n := fmt.Sprintf(format, a...)
	for _, have := range r.Notes {
		if have == n {
			return
		}
	}
	r.Notes = append(r.Notes, n)
}

// load1 is the host's 1-minute load average.
func load1() float64 {
	var l float64
	b, _ := os.ReadFile("/proc/loadavg")
	fmt.Sscan(string(b), &l)
	return l
}

// machineSteal is the CPU time this machine's own hypervisor took from it
// (the steal column of /proc/stat), in seconds: on a VM, a part of the
// noise no setting here controls.
func machineSteal() float64 {
	b, _ := os.ReadFile("/proc/stat")
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks float64
	fmt.Sscan(f[8], &ticks)
	return ticks / 100
}

func (r result) label() string { return strings.Join([]string{r.Scenario, r.Side, r.Variant}, " / ") }
