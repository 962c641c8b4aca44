package audit

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store/memstore"
)

func TestAppendAndRead(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	l, err := Open(ctx, st, 5)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ {
		r, err := l.Append(ctx, api.AuditRecord{Principal: "root", Method: "POST", Path: "/1.0/domains", Status: 200})
		if err != nil || r.Seq != uint64(i+1) || r.Time.IsZero() {
			t.Fatalf("append %d: %+v %v", i, r, err)
		}
	}
	// Retention: only the last 5 are kept, the oldest dropped first.
	if keys := st.Keys(prefix); len(keys) != 5 || keys[0] != key(8) {
		t.Fatalf("kept %v", keys)
	}
	got, err := l.Since(ctx, 0, 0)
	if err != nil || len(got) != 5 || got[0].Seq != 8 || got[4].Seq != 12 {
		t.Fatalf("since 0: %+v %v", got, err)
	}
	if got, _ := l.Since(ctx, 9, 2); len(got) != 2 || got[0].Seq != 10 || got[1].Seq != 11 {
		t.Fatalf("since 9 limit 2: %+v", got)
	}
	if got, _ := l.Tail(ctx, 3); len(got) != 3 || got[0].Seq != 10 {
		t.Fatalf("tail 3: %+v", got)
	}
	if got, _ := l.Since(ctx, 12, 0); len(got) != 0 {
		t.Fatalf("since the last: %+v", got)
	}
	// Reopened, it goes on from where it was.
	l2, err := Open(ctx, st, 5)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := l2.Append(ctx, api.AuditRecord{}); r.Seq != 13 {
		t.Fatalf("after reopening: seq %d", r.Seq)
	}
}

// Reads across digit boundaries (9 -> 10, 999 -> 1000...) see every
// record once, in order.
func TestSinceAcrossPrefixes(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	l, _ := Open(ctx, st, 0)
	for i := 0; i < 2100; i++ {
		if _, err := l.Append(ctx, api.AuditRecord{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, since := range []uint64{0, 9, 99, 995, 1000, 1999, 2099} {
		got, err := l.Since(ctx, since, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := 2100 - int(since); len(got) != want {
			t.Fatalf("since %d: %d records, want %d", since, len(got), want)
		}
		for i, r := range got {
			if r.Seq != since+uint64(i)+1 {
				t.Fatalf("since %d: record %d is seq %d", since, i, r.Seq)
			}
		}
	}
}

// A record is never rewritten: a sequence number already taken (a
// second daemon on the same store, a stale counter) fails the append.
func TestNeverRewritten(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	l, _ := Open(ctx, st, 0)
	l.Append(ctx, api.AuditRecord{Path: "/a"})
	l.last = 0
	if _, err := l.Append(ctx, api.AuditRecord{Path: "/b"}); err == nil {
		t.Fatal("record 1 was rewritten")
	}
	l.last = 1
	if got, _ := l.Since(ctx, 0, 0); len(got) != 1 || got[0].Path != "/a" {
		t.Fatalf("%+v", got)
	}
}

// Query picks by seq, time window, principal and domain, oldest first
// from a start or the newest ones.
func TestQuery(t *testing.T) {
	ctx := context.Background()
	l, err := Open(ctx, memstore.New(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, r := range []api.AuditRecord{
		{Principal: "root", Domain: "g1"},
		{Principal: "ops", Domain: "g1"},
		{Principal: "ops", Domain: "g2", Tenant: "acme"},
		{Principal: "root"},
		{Principal: "ops", Domain: "g1"},
	} {
		r.Time = t0.Add(time.Duration(i) * time.Hour)
		if _, err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		what   string
		f      Filter
		newest bool
		limit  int
		want   []uint64
	}{
		{"all", Filter{}, false, 0, []uint64{1, 2, 3, 4, 5}},
		{"after a seq", Filter{AfterSeq: 3}, false, 0, []uint64{4, 5}},
		{"from a time", Filter{Since: t0.Add(2 * time.Hour)}, false, 0, []uint64{3, 4, 5}},
		{"until a time (exclusive)", Filter{Until: t0.Add(2 * time.Hour)}, false, 0, []uint64{1, 2}},
		{"a window", Filter{Since: t0.Add(time.Hour), Until: t0.Add(4 * time.Hour)}, false, 0, []uint64{2, 3, 4}},
		{"a principal", Filter{Principal: "ops"}, false, 0, []uint64{2, 3, 5}},
		{"a domain", Filter{Domain: "g1"}, false, 0, []uint64{1, 2, 5}},
		{"both", Filter{Principal: "ops", Domain: "g1"}, false, 0, []uint64{2, 5}},
		{"a tenant's principals", Filter{Tenant: "acme"}, false, 0, []uint64{3}},
		{"a tenant and a domain", Filter{Tenant: "acme", Domain: "g1"}, false, 0, nil},
		{"the first 2", Filter{Principal: "ops"}, false, 2, []uint64{2, 3}},
		{"the newest 2", Filter{Principal: "ops"}, true, 2, []uint64{3, 5}},
		{"none", Filter{Principal: "nobody"}, true, 0, nil},
	} {
		got, err := l.Query(ctx, c.f, c.newest, c.limit)
		var seqs []uint64
		for _, r := range got {
			seqs = append(seqs, r.Seq)
		}
		if err != nil || !slices.Equal(seqs, c.want) {
			t.Errorf("%s: %v %v, want %v", c.what, seqs, err, c.want)
		}
	}
}
