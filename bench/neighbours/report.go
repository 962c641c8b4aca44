package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// metrics are, per scenario, the victim's throughput figure (inverse:
// lower is better, so its ratio is taken alone/with) and its latency
// figure.
var metrics = map[string]struct {
	thr     string
	inverse bool
	lat     string
	unit    string
}{
	"cpu":    {"units_per_s", false, "lat_p99_us", "units/s"},
	"memory": {"walk_ms", true, "lat_p99_us", "ms per walk"},
	"disk":   {"iops", false, "lat_p99_us", "IOPS"},
	"net":    {"mbit", false, "rtt_p99_us", "Mbit/s"},
}

// thrRatio is the victim's throughput with the neighbour over alone (1 =
// unchanged, lower = hurt).
func (r result) thrRatio() float64 {
	m := metrics[r.Scenario]
	x := r.ratio(m.thr)
	if m.inverse && x > 0 {
		return 1 / x
	}
	return x
}

func (r result) latRatio() float64 { return r.ratio(metrics[r.Scenario].lat) }

// neighbourText is what top showed of the neighbour while it misbehaved.
func (r result) neighbourText() string {
	t := r.Top
	switch r.Scenario {
	case "cpu":
		return fmt.Sprintf("CPU %.0f%%, steal %.0f%%", t["neighbour_cpu"], t["neighbour_steal"])
	case "disk":
		return fmt.Sprintf("%.0f IOPS", t["neighbour_iops"])
	case "net":
		return fmt.Sprintf("sent %.1f, delivered %.1f Mbit/s", t["neighbour_mbit"], t["neighbour_delivered_mbit"])
	}
	return fmt.Sprintf("victim QEMU majflt %.0f, host swap-outs %.0f", sum(r.With["qemu_majflt"]), sum(r.With["host_pswpout"]))
}

// target says whether a guarded row meets the targets (and
// which it misses); unguarded rows have none.
func (r result) target() string {
	if !r.Guarded {
		return "-"
	}
	var miss []string
	thr, lat := r.thrRatio(), r.latRatio()
	switch r.Scenario {
	case "cpu":
		if thr < 0.95 {
			miss = append(miss, fmt.Sprintf("throughput %.2f < 0.95", thr))
		}
		if lat > 1.5 {
			miss = append(miss, fmt.Sprintf("p99 %.2fx > 1.5x", lat))
		}
	case "memory":
		if n := sum(r.With["qemu_majflt"]); n > 0 {
			miss = append(miss, fmt.Sprintf("%.0f major faults", n))
		}
		if n := sum(r.With["host_pswpout"]); n > 0 {
			miss = append(miss, fmt.Sprintf("%.0f swap-outs", n))
		}
	case "disk", "net":
		if thr < 0.90 {
			miss = append(miss, fmt.Sprintf("throughput %.2f < 0.90", thr))
		}
	}
	if len(miss) == 0 {
		return "met"
	}
	return "MISSED: " + strings.Join(miss, ", ")
}

// print is a variant's line as soon as it is measured.
func (r result) print() {
	m := metrics[r.Scenario]
	fmt.Printf("%-58s throughput %.2f (alone %.0f %s), p99 %.2fx (alone %.0f µs); victim steal %.1f%% -> %.1f%%; neighbour %s; %s\n",
		r.label(), r.thrRatio(), median(r.Alone[m.thr]), m.unit, r.latRatio(), median(r.Alone[m.lat]),
		r.Top["victim_steal_alone"], r.Top["victim_steal_with"], r.neighbourText(), r.target())
	for _, n := range r.Notes {
		fmt.Printf("    %s\n", n)
	}
}

// report prints the table (markdown, for bench/README.md and
// docs/guarantees.md), writes the JSON results and, in a short run,
// fails if a control did not hold.
func (b *bench) report(results []result, took time.Duration, steal float64) error {
	load, _ := os.ReadFile("/proc/loadavg")
	var loads []float64
	for _, r := range results {
		loads = append(loads, r.Load)
	}
	fmt.Printf("\n%d variants in %s; 1-min load average as each began: median %.2f, max %.2f; now %s; this machine's own steal (its hypervisor): %.1f s of %.0f CPU-s\n",
		len(results), took.Round(time.Second), median(loads), maxOf(loads), strings.TrimSpace(string(load)), steal, took.Seconds()*float64(hostCPUs()))
	fmt.Println("| scenario | side | variant | throughput with/alone | p99 with/alone | victim steal alone -> with | neighbour (top) | target |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		fmt.Printf("| %s | %s | %s | %.2f | %.2f | %.1f%% -> %.1f%% | %s | %s |\n", r.Scenario, r.Side, r.Variant,
			r.thrRatio(), r.latRatio(), r.Top["victim_steal_alone"], r.Top["victim_steal_with"], r.neighbourText(), r.target())
	}
	type row struct {
		result
		ThrRatio float64 `json:"throughput_ratio"`
		LatRatio float64 `json:"p99_ratio"`
		Target   string  `json:"target"`
	}
	out := map[string]any{"date": time.Now().UTC().Format(time.RFC3339), "seconds": took.Seconds(), "rounds": b.s.rounds,
		"phase_s": b.s.phase.Seconds(), "uplink_mbit": b.s.uplinkMbit, "cpus": hostCPUs(), "load_after": strings.TrimSpace(string(load)),
		"short": b.s.short, "machine_steal_s": steal, "load1_median": median(loads), "load1_max": maxOf(loads)}
	var rows []row
	for _, r := range results {
		rows = append(rows, row{r, r.thrRatio(), r.latRatio(), r.target()})
	}
	out["results"] = rows
	js, _ := json.MarshalIndent(out, "", "  ")
	os.MkdirAll(filepath.Dir(b.s.out), 0o755)
	if err := os.WriteFile(b.s.out, append(js, '\n'), 0o644); err != nil {
		return err
	}
	if b.s.short {
		return smokeCheck(results)
	}
	return nil
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// smokeCheck is what CI asserts of the short run: every row has figures,
// and each Ringfence control held the neighbour where it was set (the
// ratios themselves are not asserted: a shared CI host is too noisy for
// them in one round).
func smokeCheck(results []result) error {
	var bad []string
	for _, r := range results {
		m := metrics[r.Scenario]
		if median(r.Alone[m.thr]) <= 0 || median(r.With[m.thr]) <= 0 {
			bad = append(bad, r.label()+": no victim figures")
		}
		if r.Side != "ringfence" {
			continue
		}
		t := r.Top
		switch r.Scenario {
		case "cpu":
			if t["neighbour_cpu"] > 5+10 || t["neighbour_cpu"] <= 0 {
				bad = append(bad, fmt.Sprintf("%s: the neighbour capped at 5%% used %.0f%% of a CPU", r.label(), t["neighbour_cpu"]))
			}
		case "disk":
			if t["neighbour_iops"] > neighbourIOPS*1.3 || t["neighbour_iops"] <= 0 {
				bad = append(bad, fmt.Sprintf("%s: the neighbour limited to %d IOPS did %.0f", r.label(), neighbourIOPS, t["neighbour_iops"]))
			}
		case "net":
			if t["neighbour_delivered_mbit"] > 5*1.3 || t["neighbour_delivered_mbit"] <= 0 {
				bad = append(bad, fmt.Sprintf("%s: the neighbour limited to %s got %.1f Mbit/s through", r.label(), neighbourRate, t["neighbour_delivered_mbit"]))
			}
		case "memory":
			if n := sum(r.With["qemu_majflt"]); n > 0 {
				bad = append(bad, fmt.Sprintf("%s: the victim's QEMU took %.0f major faults", r.label(), n))
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("smoke check failed:\n  %s", strings.Join(bad, "\n  "))
	}
	fmt.Println("smoke check: every control held")
	return nil
}
