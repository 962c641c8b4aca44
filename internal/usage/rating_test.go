package usage

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// month runs "web" (tenant acme, 2 vCPUs, 1 GiB, a 10 GiB disk) for the
// first 10 hours of December 2026, moving 1 GB in total, then ends it.
func month(t *testing.T) (*Ledger, *clock) {
	c := newClock("2026-12-01T00:00:00Z")
	l, st := newLedger(t, c)
	commit(t, l, st, l.Change("web", alloc(api.StateRunning, 1024), nil))
	for i := 1; i <= 600; i++ {
		c.add(time.Minute)
		l.Observe("web", raw("a", int64(i)*int64(time.Second), int64(i)*1e9/600))
		if err := l.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, l, st, l.End("web", nil, "destroyed"))
	return l, c
}

func TestRowsSumByPeriodAndPage(t *testing.T) {
	l, _ := month(t)
	from, to, _ := ParseMonth("2026-12")
	for _, tc := range []struct {
		by   string
		rows int
	}{{"", 10}, {"hour", 10}, {"day", 1}, {"month", 1}} {
		rows, next, err := l.Rows(context.Background(), Filter{FromNs: from, ToNs: to, By: tc.by})
		if err != nil || next != "" {
			t.Fatal(err, next)
		}
		if len(rows) != tc.rows {
			t.Fatalf("by %q: %d rows, want %d", tc.by, len(rows), tc.rows)
		}
		var ns int64
		var bytes int64
		for _, r := range rows {
			ns += r.Ns
			bytes += r.Delta.NetRxBytes
		}
		if ns != int64(10*time.Hour) || bytes != 1e9 {
			t.Fatalf("by %q: %d ns and %d bytes, want 10 h and 1 GB", tc.by, ns, bytes)
		}
	}
	// Pages of 3 give the same rows.
	var all []api.UsageRow
	f := Filter{FromNs: from, ToNs: to, Limit: 3}
	for {
		rows, next, err := l.Rows(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, rows...)
		if next == "" {
			break
		}
		f.Cursor = next
	}
	if len(all) != 10 {
		t.Fatalf("paged %d rows, want 10", len(all))
	}
	if _, _, err := l.Rows(context.Background(), Filter{FromNs: from, ToNs: to, Cursor: "junk"}); err == nil {
		t.Fatal("a junk cursor was taken")
	}
	// A tenant sees its own; another tenant none.
	other := "other"
	rows, _, _ := l.Rows(context.Background(), Filter{FromNs: from, ToNs: to, Tenant: &other})
	if len(rows) != 0 {
		t.Fatalf("tenant other sees %d rows", len(rows))
	}
}

func TestClipSplitsTimeExactly(t *testing.T) {
	r := api.UsageRecord{StartNs: 0, EndNs: 100, Delta: api.UsageCounters{CPUNs: 1000}, Totals: api.UsageCounters{CPUNs: 5000}}
	a, b := Clip(r, 0, 33), Clip(r, 33, 100)
	if a.EndNs-a.StartNs+b.EndNs-b.StartNs != 100 || a.Delta.CPUNs+b.Delta.CPUNs != 1000 {
		t.Fatalf("clipped %+v and %+v do not add up", a, b)
	}
	// Totals are those at each part's end: the start stays the record's.
	if a.Totals.CPUNs-a.Delta.CPUNs != 4000 || b.Totals.CPUNs != 5000 || b.Totals.CPUNs-b.Delta.CPUNs != a.Totals.CPUNs {
		t.Fatalf("clipped totals %+v and %+v", a.Totals, b.Totals)
	}
}

func TestInvoice(t *testing.T) {
	l, _ := month(t)
	p := Prices{Currency: "EUR", VCPUHour: 0.01, RAMGiBHour: 0.005, DiskGiBMonth: 0.1, TransferGB: 0.5}
	inv, err := l.Invoice(context.Background(), "2026-12", nil, p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"vcpu-hours":      20,                // 2 vCPUs × 10 h
		"ram-gib-hours":   10,                // 1 GiB × 10 h
		"disk-gib-months": 10 * 10.0 / 744.0, // 10 GiB × 10 h of a 744 h month
		"transfer-gb":     1,
	}
	if len(inv.Lines) != len(want) {
		t.Fatalf("lines %+v", inv.Lines)
	}
	for _, ln := range inv.Lines {
		if ln.Tenant != "acme" || math.Abs(ln.Quantity-want[ln.Item]) > 1e-9 {
			t.Errorf("line %+v, want quantity %v", ln, want[ln.Item])
		}
	}
	if math.Abs(inv.Totals["acme"]-(0.2+0.05+0.01+0.5)) > 0.011 {
		t.Errorf("total %v", inv.Totals["acme"])
	}
	if _, err := l.Invoice(context.Background(), "December", nil, p); err == nil {
		t.Fatal("a bad month was taken")
	}
}

func TestPriceFileKeys(t *testing.T) {
	for _, tc := range []struct {
		key, val string
		ok       bool
	}{
		{"vcpu_hour", "0.012", true}, {"transfer_gb", "1", true}, {"currency", "EUR", true},
		{"vcpu_hour", "-1", false}, {"vcpu_hour", "cheap", false}, {"gpu_hour", "1", false},
	} {
		var p Prices
		if err := p.Set(tc.key, tc.val); (err == nil) != tc.ok {
			t.Errorf("%s = %s: err %v, want ok %v", tc.key, tc.val, err, tc.ok)
		}
	}
}

func TestQuotaCrossesOnce(t *testing.T) {
	c := newClock("2026-12-01T00:00:00Z")
	l, st := newLedger(t, c)
	commit(t, l, st, l.Change("web", alloc(api.StateRunning, 512), nil))
	subjects := []Subject{{Name: "web", Bytes: 1000, Action: "pause"}, {Tenant: true, Name: "acme", Bytes: 5000}}
	check := func(rx int64) []Crossing {
		c.add(time.Second)
		l.Observe("web", raw("a", 0, rx))
		l.Flush(context.Background())
		got, err := l.CheckQuotas(context.Background(), subjects)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := check(999); len(got) != 0 {
		t.Fatalf("under the quota: %+v", got)
	}
	if got := check(1000); len(got) != 1 || !got[0].First || got[0].Name != "web" {
		t.Fatalf("at the quota: %+v", got)
	}
	if got := check(2000); len(got) != 1 || got[0].First {
		t.Fatalf("still over: %+v (fires once)", got)
	}
	// A new month starts from nothing.
	c.t = time.Date(2027, 1, 1, 0, 0, 30, 0, time.UTC)
	if got := check(2100); len(got) != 0 {
		t.Fatalf("new month: %+v", got)
	}
}

func TestP95(t *testing.T) {
	c := newClock("2026-12-01T00:00:00Z")
	l, st := newLedger(t, c)
	commit(t, l, st, l.Change("web", alloc(api.StateRunning, 512), nil))
	var rx int64
	// 100 five-minute slots: 94 at 1 MB, 6 at 100 MB (the top 5% and one).
	for i := 0; i < 100; i++ {
		c.add(5 * time.Minute)
		if i < 94 {
			rx += 1e6
		} else {
			rx += 100e6
		}
		l.Observe("web", raw("a", 0, rx))
		l.Flush(context.Background())
	}
	p, err := l.P95(context.Background(), "2026-12", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Slots: the month so far (100 of them, the first empty at the
	// month's start); the 95th is one of the 100 MB ones.
	if want := 100e6 * 8 / 300 / 1e6; math.Abs(p["acme"]-want) > 1e-6 {
		t.Fatalf("p95 %v Mbit/s, want %v", p["acme"], want)
	}
}
