package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// variants are the table's rows, scenario by scenario, Ringfence first;
// memory last (its oversold host reboots the bare guests). The short
// (CI) run keeps one per scenario and side (smoke).
func (b *bench) variants() []variant {
	var out []variant
	for _, sc := range []struct {
		name string
		make func() []variant
	}{{"cpu", b.cpuVariants}, {"disk", b.diskVariants}, {"net", b.netVariants}, {"memory", b.memoryVariants}} {
		if !b.s.scenarios[sc.name] {
			continue
		}
		for _, v := range sc.make() {
			if v.smoke || !b.s.short {
				out = append(out, v)
			}
		}
	}
	return out
}

// only resumes the variant's two guests and pauses every other one, so a
// round is the victim and its neighbour on the host and nothing else of
// the bench's.
func (b *bench) only(keep ...*guest) error {
	if b.paused == nil {
		b.paused = map[*guest]bool{}
	}
	for _, g := range b.allGuests() {
		want := true
		for _, k := range keep {
			if k == g {
				want = false
			}
		}
		if b.paused[g] == want {
			continue
		}
		pause, resume := b.rf.pause, b.rf.resume
		if g.side == "bare" {
			pause, resume = b.bare.pause, b.bare.resume
		}
		op := resume
		if want {
			op = pause
		}
		if err := op(g); err != nil {
			return fmt.Errorf("%s: %w", g, err)
		}
		b.paused[g] = want
	}
	return nil
}

// cpuVictim is the victim's CPU round: the compute loop, then the 1 ms
// wake-up probe.
func (b *bench) cpuVictim(g *guest) func() (map[string]float64, error) {
	return func() (map[string]float64, error) {
		var c struct {
			Units float64 `json:"units_per_s"`
		}
		var l latStats
		if err := g.probe(fmt.Sprintf("cpu %.2f", b.s.phase.Seconds()), time.Minute, &c); err != nil {
			return nil, err
		}
		if err := g.probe(fmt.Sprintf("lat %.2f", b.s.phase.Seconds()), time.Minute, &l); err != nil {
			return nil, err
		}
		return map[string]float64{"units_per_s": c.Units, "lat_p99_us": l.P99, "lat_p50_us": l.P50}, nil
	}
}

// latStats is the probe's lateness or round-trip summary.
type latStats struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_us"`
	P99 float64 `json:"p99_us"`
	Max float64 `json:"max_us"`
}

func (b *bench) cpuVariants() []variant {
	rf, bare := b.rf, b.bare
	base := func(side, name string, guarded, smoke bool, setup func() error) variant {
		v := variant{scenario: "cpu", side: side, name: name, guarded: guarded, smoke: smoke, setup: setup}
		if side == "ringfence" {
			v.victim, v.neigh, v.sampler = rf.victim, rf.noisy, rf
		} else {
			v.victim, v.neigh, v.sampler = bare.victim, bare.noisy, bare
		}
		v.victimM = b.cpuVictim(v.victim)
		v.misbehave = func() error { return v.neigh.spawn("burn") }
		v.calm = v.neigh.calm
		return v
	}
	sched := func(vw, vcap int, vcpus string, nw, ncap int, ncpus string) func() error {
		return func() error {
			if err := rf.sched(rf.victim, vw, vcap, vcpus); err != nil {
				return err
			}
			return rf.sched(rf.noisy, nw, ncap, ncpus)
		}
	}
	pin := func(vc, nc int) func() error {
		return func() error {
			if err := bare.pin(bare.victim, vc); err != nil {
				return err
			}
			return bare.pin(bare.noisy, nc)
		}
	}
	return []variant{
		base("ringfence", "equal weights, 2 vCPUs on 2 CPUs", true, false, sched(256, 0, "all", 256, 0, "all")),
		base("ringfence", "one CPU shared, equal weights", false, false, sched(256, 0, "1", 256, 0, "1")),
		base("ringfence", "one CPU shared, victim weight 8192", true, false, sched(8192, 0, "1", 256, 0, "1")),
		base("ringfence", "one CPU shared, neighbour cap 5", true, true, sched(256, 0, "1", 256, 5, "1")),
		base("ringfence", "pinned apart (cpus=0 / cpus=1)", true, false, sched(256, 0, "0", 256, 0, "1")),
		base("bare", "no pinning", false, false, pin(-1, -1)),
		base("bare", "pinned apart (taskset)", false, false, pin(0, 1)),
		base("bare", "one CPU shared", false, true, pin(1, 1)),
	}
}

// neighbourVariant is a disk or network row: the victim's measurement
// with one neighbour's workload, on one side.
// Smoke rows: Ringfence's with its control in force, and bare's.
func (b *bench) neighbourVariant(scenario, side, name string, guarded bool, vic, nb *guest, s sampler,
	m func(*guest) func() (map[string]float64, error), work ...string) variant {
	return variant{scenario: scenario, side: side, name: name, guarded: guarded, smoke: guarded || side == "bare", victim: vic, neigh: nb, sampler: s,
		setup:     b.apart(vic, nb),
		misbehave: func() error { return nb.spawn(work...) },
		calm:      nb.calm, victimM: m(vic)}
}

func (b *bench) diskVariants() []variant {
	rf, bare := b.rf, b.bare
	limited := fmt.Sprintf("neighbour iops=%d", neighbourIOPS)
	// Under TCG the I/O path is CPU: the victim's QEMU threads beside its
	// vCPU need the other CPU too, where the neighbour emulates its own
	// (limited) I/O. The victim's weight holds that CPU for them.
	weighted := b.neighbourVariant("disk", "ringfence", limited+", victim cpu_weight 1024", true, rf.victim, rf.tamed, rf, b.diskVictim, "diskflood /dev/vdb")
	weighted.smoke = false
	weighted.setup = func() error {
		if err := b.apart(rf.victim, rf.tamed)(); err != nil {
			return err
		}
		return rf.sched(rf.victim, 1024, 0, "0")
	}
	return []variant{
		b.neighbourVariant("disk", "ringfence", "no limit", false, rf.victim, rf.noisy, rf, b.diskVictim, "diskflood /dev/vdb"),
		b.neighbourVariant("disk", "ringfence", limited, true, rf.victim, rf.tamed, rf, b.diskVictim, "diskflood /dev/vdb"),
		weighted,
		b.neighbourVariant("disk", "bare", "no limit", false, bare.victim, bare.noisy, bare, b.diskVictim, "diskflood /dev/vdb"),
	}
}

// apart pins the victim's vCPU to CPU 0 and the neighbour's to CPU 1, on
// either side, default weights and no cap: the memory, disk and network
// rows then measure those resources, not the two sharing a CPU (the cpu
// rows measure that).
func (b *bench) apart(vic, nb *guest) func() error {
	return func() error {
		if vic.side == "bare" {
			if err := b.bare.pin(vic, 0); err != nil {
				return err
			}
			return b.bare.pin(nb, 1%hostCPUs())
		}
		if err := b.rf.sched(vic, 256, 0, "0"); err != nil {
			return err
		}
		return b.rf.sched(nb, 256, 0, fmt.Sprint(1%hostCPUs()))
	}
}

// diskVictim: random 4k O_DIRECT writes on the victim's own disk.
func (b *bench) diskVictim(g *guest) func() (map[string]float64, error) {
	return func() (map[string]float64, error) {
		var d struct {
			IOPS float64  `json:"iops"`
			Lat  latStats `json:"lat"`
		}
		if err := g.probe(fmt.Sprintf("disk /dev/vdb %.2f", b.s.phase.Seconds()), time.Minute, &d); err != nil {
			return nil, err
		}
		return map[string]float64{"iops": d.IOPS, "lat_p99_us": d.Lat.P99, "lat_p50_us": d.Lat.P50}, nil
	}
}

func (b *bench) netVariants() []variant {
	rf, bare := b.rf, b.bare
	flood := []string{"tcpflood " + floodTCP, "udpflood " + floodUDP}
	return []variant{
		b.neighbourVariant("net", "ringfence", "neighbour without rate=", false, rf.victim, rf.noisy, rf, b.netVictim, flood...),
		b.neighbourVariant("net", "ringfence", "neighbour rate="+neighbourRate, true, rf.victim, rf.tamed, rf, b.netVictim, flood...),
		b.neighbourVariant("net", "bare", "no rate limits", false, bare.victim, bare.noisy, bare, b.netVictim, flood...),
	}
}

// netVictim: TCP flat out to the peer, then UDP round trips to it.
func (b *bench) netVictim(g *guest) func() (map[string]float64, error) {
	return func() (map[string]float64, error) {
		var t struct {
			Mbit float64 `json:"mbit"`
		}
		var p struct {
			RTT  latStats `json:"rtt"`
			Lost int      `json:"lost"`
		}
		if err := g.probe(fmt.Sprintf("tcp %s %.2f", peerTCP, b.s.phase.Seconds()), time.Minute, &t); err != nil {
			return nil, err
		}
		if err := g.probe(fmt.Sprintf("ping %s %.2f", echoUDP, b.s.phase.Seconds()), time.Minute, &p); err != nil {
			return nil, err
		}
		return map[string]float64{"mbit": t.Mbit, "rtt_p99_us": p.RTT.P99, "rtt_p50_us": p.RTT.P50, "lost": float64(p.Lost)}, nil
	}
}

// pswpout is the host's swap-outs so far.
func pswpout() float64 {
	b, _ := os.ReadFile("/proc/vmstat")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "pswpout" {
			var n float64
			fmt.Sscan(f[1], &n)
			return n
		}
	}
	return 0
}
