// Command neighbours is the proof of the ring-fence (issue 23): a victim
// guest runs a measurable workload while a neighbour guest on the same
// host does its worst, in interleaved rounds (victim alone, victim with
// the neighbour misbehaving, alternating which comes first), and each of
// the victim's figures is reported as the ratio of the two rounds'
// medians. Four scenarios, each under Ringfence's controls and side by
// side with bare QEMU guests without cgroups (what a hand-rolled or
// oversold host gives):
//
//   - cpu: a fixed compute loop and a 1 ms wake-up probe while the
//     neighbour burns its vCPU; equal weights, both on one host CPU with
//     equal weights, with the victim's higher weight, with the
//     neighbour's cap, and each pinned to a CPU of its own;
//   - memory: the neighbour allocates until it is OOM-killed; the victim
//     walks a resident working set and runs the wake-up probe; its QEMU's
//     major faults and the host's swap-outs are counted;
//   - disk: the neighbour writes random 4k blocks flat out on its own
//     disk; the victim's random 4k write IOPS and latency on its disk,
//     with and without the neighbour's iops= limit;
//   - net: the neighbour floods TCP and UDP through the same bridge and
//     uplink to a peer namespace; the victim's TCP throughput and UDP
//     round trips to the peer, with and without the neighbour's rate=.
//
// While the neighbour misbehaves, `ringfence top --json` is sampled every
// second (bare QEMU: the same figures from /proc): the victim's steal and
// the neighbour's CPU, IOPS and transmit rate.
//
// Run as root after `make image`: go run ./bench/neighbours [-short]
// (make bench-neighbours). Writes bench/results/neighbours.json.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
	"github.com/ringfence/ringfence/internal/image"
)

// settings are what one run does: how many rounds of how long, and which
// scenarios.
type settings struct {
	rounds     int
	phase      time.Duration // each victim measurement's length
	scenarios  map[string]bool
	short      bool
	uplinkMbit int // the shared uplink's rate to the peer (0: unshaped)
	img        image.Paths
	out        string // the JSON results file
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "peer" {
		peer()
		return
	}
	short := flag.Bool("short", false, "smoke run (CI): one round, short phases, one variant per scenario and side; checks the controls hold")
	rounds := flag.Int("rounds", 6, "rounds per variant (each: victim alone and with the neighbour)")
	phase := flag.Duration("phase", 1500*time.Millisecond, "length of each victim measurement")
	only := flag.String("scenarios", "cpu,memory,disk,net", "scenarios to run")
	uplink := flag.Int("uplink-mbit", 50, "the shared uplink to the peer namespace, Mbit/s (0: unshaped)")
	imgDir := flag.String("image", "/var/lib/ringfence/images/default", "default image dir")
	out := flag.String("o", "bench/results/neighbours.json", "results file")
	flag.Parse()
	s := settings{rounds: *rounds, phase: *phase, short: *short, uplinkMbit: *uplink, img: image.PathsIn(*imgDir), out: *out, scenarios: map[string]bool{}}
	for _, sc := range splitList(*only) {
		s.scenarios[sc] = true
	}
	if s.short {
		s.rounds, s.phase = 1, 1200*time.Millisecond
		if *out == "bench/results/neighbours.json" {
			s.out = "bench/results/neighbours-short.json"
		}
	}
	if err := run(s); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(s settings) error {
	if !s.img.Built() {
		return fmt.Errorf("no default image in %s: run `make image`", s.img.Dir)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: the bench makes namespaces, taps and cgroups")
	}
	t0, steal0 := time.Now(), machineSteal()
	b := &bench{s: s}
	defer b.undo.Run()
	for _, step := range []func() error{b.workdir, b.network, b.startRingfence, b.startBare, b.prepareGuests} {
		if err := step(); err != nil {
			return err
		}
	}
	b.header()
	var results []result
	for _, v := range b.variants() {
		r, err := b.measure(v)
		if err != nil {
			return fmt.Errorf("%s / %s / %s: %w", v.scenario, v.side, v.name, err)
		}
		results = append(results, r)
		r.print()
	}
	return b.report(results, time.Since(t0), machineSteal()-steal0)
}

// bench is one run: its scratch dir, namespaces, the two sides' guests
// and what to take down at the end.
type bench struct {
	s        settings
	dir, bin string
	probe    string // the guest workload binary
	ns, peer string // the host's network namespace and the peer's
	undo     benchenv.Undo
	peerOut  *benchenv.Console // the peer's output: its flood counts
	rf       *rfSide
	bare     *bareSide
	seq      int
	paused   map[*guest]bool
}
