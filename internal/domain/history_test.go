package domain

import (
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// TestHistory: a point a sample, rates from the byte counters of the same
// process, the minute's mean in the coarse ring, the rings bounded, a
// domain no longer sampled dropped.
func TestHistory(t *testing.T) {
	var h history
	t0 := time.Unix(1_800_000_000, 0) // a minute's start
	prev := api.Stats{Time: t0.Add(-time.Second), Domains: []api.DomainStats{{Name: "a", PID: 7}}}
	for i := range fineSpan + 70 {
		cur := api.Stats{Time: t0.Add(time.Duration(i) * time.Second), Domains: []api.DomainStats{
			{Name: "a", PID: 7, CPUPct: float64(i % 60), MemKiB: 128 << 10, VBDRdBytes: int64(i+1) * 1000, NetRxBytes: int64(i+1) * 10},
		}}
		h.record(&prev, &cur)
		prev = cur
	}
	dh := h.doms["a"]
	fine := dh.fine.since(0)
	if len(fine) != fineSpan {
		t.Fatalf("%d fine points, want %d", len(fine), fineSpan)
	}
	last := fine[len(fine)-1]
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"disk read rate", last.DiskRdBps, 1000}, {"net rx rate", last.NetRxBps, 10}, {"memory", last.MemMiB, 128},
		{"oldest point", float64(fine[0].Time), float64(t0.Unix() + 70)},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	coarse := dh.coarse.since(0)
	if len(coarse) != 11 || coarse[0].Time != t0.Unix() || coarse[0].CPUPct != 29.5 {
		t.Fatalf("coarse: %d points, first %+v; want 11 minutes, the first's mean CPU 29.5", len(coarse), coarse[0])
	}
	if got := dh.fine.since(last.Time - 3); len(got) != 3 {
		t.Fatalf("since the last 3 s: %d points", len(got))
	}
	// A new process (a restart): no rate from the old one's counters.
	cur := api.Stats{Time: prev.Time.Add(time.Second), Domains: []api.DomainStats{{Name: "a", PID: 8, VBDRdBytes: 5}}}
	h.record(&prev, &cur)
	if p := h.doms["a"].fine.since(cur.Time.Unix() - 1); len(p) != 1 || p[0].DiskRdBps != 0 {
		t.Fatalf("a restarted domain's first point: %+v", p)
	}
	next := api.Stats{Time: cur.Time.Add(time.Second)}
	h.record(&cur, &next)
	if len(h.doms) != 0 {
		t.Fatal("a domain no longer sampled keeps its history")
	}
}
