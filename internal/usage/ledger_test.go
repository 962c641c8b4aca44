package usage

import (
	"context"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/store/memstore"
)

// clock is a settable time for the ledger.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock(s string) *clock       { t, _ := time.Parse(time.RFC3339, s); return &clock{t} }
func alloc(st api.State, mem int) api.UsageAlloc {
	return api.UsageAlloc{State: st, Tenant: "acme", VCPUs: 2, MaxMemMiB: mem, MemMiB: mem, Disks: []api.UsageDisk{{VDev: "xvda", Bytes: 10 << 30}}}
}

func raw(inc string, cpu int64, rx int64) Raw {
	return Raw{Incarnation: inc, CPUNs: cpu, Vifs: map[string]api.UsageNet{"00:16:3e:00:00:01": {RxBytes: rx}}}
}

func newLedger(t *testing.T, c *clock) (*Ledger, store.Store) {
	st := memstore.New()
	l := New(st)
	l.Now = c.now
	if err := l.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l, st
}

func commit(t *testing.T, l *Ledger, st store.Store, ch *Change) {
	t.Helper()
	if err := ch.Commit(context.Background(), st); err != nil {
		t.Fatal(err)
	}
}

// records reads name's closed records from the store, by start.
func records(t *testing.T, l *Ledger, name string) []api.UsageRecord {
	t.Helper()
	recs, err := l.Records(context.Background(), Filter{FromNs: 0, ToNs: 1 << 62, Domain: name})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// checkTiling fails unless recs tile [from, to) with no gap or overlap
// and their deltas add up to the last totals.
func checkTiling(t *testing.T, recs []api.UsageRecord, from, to int64, total api.UsageCounters) {
	t.Helper()
	if len(recs) == 0 {
		t.Fatal("no records")
	}
	at := from
	var sum api.UsageCounters
	for _, r := range recs {
		if r.StartNs != at {
			t.Fatalf("record %+v starts at %d, the previous ended at %d", r, r.StartNs, at)
		}
		if r.EndNs <= r.StartNs {
			t.Fatalf("record %+v is empty or backwards", r)
		}
		at = r.EndNs
		sum = Add(sum, r.Delta)
	}
	if at != to {
		t.Fatalf("records end at %d, want %d", at, to)
	}
	if !equalCounters(sum, total) {
		t.Fatalf("deltas add up to %+v, want %+v", sum, total)
	}
}

func TestMeterIsMonotonic(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reads []Raw
		cpu   int64
		steal int64
		rd    int64
	}{
		{"steady", []Raw{{Incarnation: "a", CPUNs: 10}, {Incarnation: "a", CPUNs: 25}}, 25, 0, 0},
		{"new QEMU starts from zero", []Raw{{Incarnation: "a", CPUNs: 100}, {Incarnation: "b", CPUNs: 7}}, 107, 0, 0},
		{"new QEMU already past the old figure", []Raw{{Incarnation: "a", CPUNs: 100}, {Incarnation: "b", CPUNs: 150}}, 250, 0, 0},
		{"unmeasured keeps the last", []Raw{{Incarnation: "a", CPUNs: 100}, {Incarnation: "a", CPUNs: -1}}, 100, 0, 0},
		{"a vCPU unplugged and replugged", []Raw{
			{Incarnation: "a", CPUNs: -1, Steal: map[string]int64{"1": 50, "2": 30}},
			{Incarnation: "a", CPUNs: -1, Steal: map[string]int64{"1": 60}},
			{Incarnation: "a", CPUNs: -1, Steal: map[string]int64{"1": 70, "2": 5}}}, 0, 105, 0},
		{"a disk re-attached", []Raw{
			{Incarnation: "a", CPUNs: -1, Disks: map[string]DiskIO{"vdb": {RdBytes: 1000}}},
			{Incarnation: "a", CPUNs: -1, Disks: map[string]DiskIO{}},
			{Incarnation: "a", CPUNs: -1, Disks: map[string]DiskIO{"vdb": {RdBytes: 10}}}}, 0, 0, 1010},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m meter
			prev := api.UsageCounters{}
			for _, r := range tc.reads {
				m.observe(r)
				cur := m.totals()
				for i, f := range fields(&cur) {
					if *f < *fields(&prev)[i] {
						t.Fatalf("figure %d went down: %+v after %+v", i, cur, prev)
					}
				}
				prev = cur
			}
			if prev.CPUNs != tc.cpu || prev.StealNs != tc.steal || prev.DiskRdBytes != tc.rd {
				t.Fatalf("totals %+v, want cpu %d steal %d rd %d", prev, tc.cpu, tc.steal, tc.rd)
			}
		})
	}
}

func TestRecordsTileAcrossHoursAndChanges(t *testing.T) {
	c := newClock("2026-12-31T22:30:00Z")
	l, st := newLedger(t, c)
	start := c.t.UnixNano()
	commit(t, l, st, l.Change("web", alloc("", 512), nil))
	c.add(time.Second)
	commit(t, l, st, l.Change("web", alloc(api.StateRunning, 512), nil))
	cpu := int64(0)
	for i := 0; i < 120; i++ { // two hours, a reading a minute
		c.add(time.Minute)
		cpu += int64(30 * time.Second)
		l.Observe("web", raw("a", cpu, int64(i)*1000))
		if err := l.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if i == 45 {
			commit(t, l, st, l.Change("web", alloc(api.StateRunning, 1024), nil)) // mem-set
		}
	}
	c.add(time.Second)
	commit(t, l, st, l.End("web", nil, "destroyed"))
	recs := records(t, l, "web")
	checkTiling(t, recs, start, c.t.UnixNano(), api.UsageCounters{CPUNs: cpu, NetRxBytes: 119000,
		Vifs: map[string]api.UsageNet{"00:16:3e:00:00:01": {RxBytes: 119000}}})
	var reasons []string
	for _, r := range recs {
		reasons = append(reasons, r.Reason)
		if h := nextHour(r.StartNs); r.EndNs > h {
			t.Errorf("record %d..%d crosses the hour at %d", r.StartNs, r.EndNs, h)
		}
	}
	want := []string{"state:running", "hour", "mem", "hour", "destroyed"}
	if len(reasons) != len(want) {
		t.Fatalf("reasons %v, want %v", reasons, want)
	}
	for i := range want {
		if reasons[i] != want[i] {
			t.Fatalf("reasons %v, want %v", reasons, want)
		}
	}
	if _, ok := l.Totals("web"); ok {
		t.Error("an ended domain still has an open record")
	}
	// The new year's records are under their own month.
	kvs, _ := st.List(context.Background(), keyRec+"2027-01/web/")
	if len(kvs) == 0 {
		t.Error("no record under 2027-01")
	}
}

// A daemon killed at any moment: a new ledger over the same store and
// the same (outside) counters finds every second and byte once.
func TestRecoveryLosesAndDuplicatesNothing(t *testing.T) {
	for _, tc := range []struct {
		name       string
		flushAfter bool // the last reading was flushed before the kill
	}{{"killed after a flush", true}, {"killed before a flush", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock("2026-12-01T10:59:00Z")
			l, st := newLedger(t, c)
			start := c.t.UnixNano()
			commit(t, l, st, l.Change("web", alloc(api.StateRunning, 512), nil))
			c.add(30 * time.Second)
			l.Observe("web", raw("a", 100, 10))
			l.Flush(context.Background())
			c.add(45 * time.Second) // past 11:00
			l.Observe("web", raw("a", 300, 30))
			if tc.flushAfter {
				l.Flush(context.Background())
			}
			// kill -9: the ledger is gone; its store and the cgroup stay.
			c.add(10 * time.Second)
			l2 := New(st)
			l2.Now = c.now
			if err := l2.Load(context.Background()); err != nil {
				t.Fatal(err)
			}
			l2.Observe("web", raw("a", 400, 50))
			l2.Flush(context.Background())
			c.add(time.Second)
			commit(t, l2, st, l2.End("web", nil, "destroyed"))
			checkTiling(t, records(t, l2, "web"), start, c.t.UnixNano(), api.UsageCounters{CPUNs: 400, NetRxBytes: 50,
				Vifs: map[string]api.UsageNet{"00:16:3e:00:00:01": {RxBytes: 50}}})
		})
	}
}

func TestChangeNotCommittedLeavesLedgerAsItWas(t *testing.T) {
	c := newClock("2026-12-01T10:00:00Z")
	l, st := newLedger(t, c)
	commit(t, l, st, l.Change("web", alloc(api.StateRunning, 512), nil))
	c.add(time.Minute)
	ch := l.Change("web", alloc(api.StatePaused, 512), nil)
	ch.Done(context.Canceled) // the state change's transaction failed
	if l.Differs("web", alloc(api.StateRunning, 512)) {
		t.Fatal("a change whose transaction failed was applied")
	}
	if n := len(records(t, l, "web")); n != 1 { // the open one only
		t.Fatalf("%d records, want the open one", n)
	}
	if l.Change("web", alloc(api.StateRunning, 512), nil) != nil {
		t.Fatal("no change is no record")
	}
}

// A create that failed leaves no record: Discard drops the open one
// without closing it, and a later create under the name starts afresh.
func TestDiscardLeavesNothing(t *testing.T) {
	c := newClock("2026-12-01T10:00:00Z")
	l, st := newLedger(t, c)
	commit(t, l, st, l.Change("late", alloc("", 512), nil))
	c.add(300 * time.Millisecond)
	commit(t, l, st, l.Discard("late"))
	kvs, err := st.List(context.Background(), "usage/")
	if err != nil || len(kvs) != 0 {
		t.Fatalf("after a discard the store holds %v (%v)", kvs, err)
	}
	if !l.Differs("late", alloc("", 512)) {
		t.Fatal("the ledger still holds the discarded record")
	}
	if l.Discard("late") != nil {
		t.Fatal("discarding nothing is no change")
	}
}

func TestSeedContinuesTotals(t *testing.T) {
	c := newClock("2026-12-01T10:00:00Z")
	l, st := newLedger(t, c)
	seed := api.UsageCounters{CPUNs: 5000, NetTxBytes: 70}
	l.Seed("web", seed)
	commit(t, l, st, l.Change("web", alloc(api.StateRunning, 512), nil))
	c.add(time.Minute)
	l.Observe("web", raw("dst", 100, 0))
	got, _ := l.Totals("web")
	if got.CPUNs != 5100 || got.NetTxBytes != 70 {
		t.Fatalf("totals %+v, want the seed's continued", got)
	}
	// Saved here: a restore never goes below what its records ended with.
	c.add(time.Minute)
	commit(t, l, st, l.End("web", nil, "saved"))
	l.Seed("web", api.UsageCounters{CPUNs: 5050})
	commit(t, l, st, l.Change("web", alloc(api.StateRunning, 512), nil))
	if got, _ := l.Totals("web"); got.CPUNs != 5100 {
		t.Fatalf("restored totals %+v, want at least 5100", got)
	}
}

func TestRenameClosesAndContinues(t *testing.T) {
	c := newClock("2026-12-01T10:00:00Z")
	l, st := newLedger(t, c)
	commit(t, l, st, l.Change("old", alloc(api.StateRunning, 512), nil))
	c.add(time.Minute)
	l.Observe("old", raw("a", 100, 0))
	commit(t, l, st, l.Rename("old", "new"))
	c.add(time.Minute)
	l.Observe("new", raw("a", 300, 0))
	if got, _ := l.Totals("new"); got.CPUNs != 300 {
		t.Fatalf("renamed totals %+v", got)
	}
	recs := records(t, l, "old")
	if len(recs) != 1 || recs[0].Reason != "renamed" || recs[0].Delta.CPUNs != 100 {
		t.Fatalf("old records %+v", recs)
	}
}
