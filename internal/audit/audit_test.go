package audit

import (
	"context"
	"testing"

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
