package events

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

func ev(domain string) api.Event {
	return api.Event{Type: api.EventLifecycle, Action: api.EvStarted, Domain: domain}
}

func next(t *testing.T, s *Sub) api.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return e
}

func TestReplayAndLive(t *testing.T) {
	b := New(Config{})
	for range 5 {
		b.Publish(ev("g1"))
	}
	s, err := b.Subscribe(2, nil)
	if err != nil {
		t.Fatal(err)
	}
	for want := uint64(3); want <= 5; want++ {
		if e := next(t, s); e.Seq != want || e.Time.IsZero() {
			t.Fatalf("got %+v, want seq %d", e, want)
		}
	}
	go b.Publish(ev("g2"))
	if e := next(t, s); e.Seq != 6 || e.Domain != "g2" {
		t.Fatalf("live: %+v", e)
	}
	live, _ := b.Subscribe(Live, nil)
	b.Publish(ev("g3"))
	if e := next(t, live); e.Seq != 7 {
		t.Fatalf("live subscriber got %+v", e)
	}
	if _, err := b.Subscribe(8, nil); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("since beyond the head: %v", err)
	}
	if _, err := b.Subscribe(7, nil); err != nil {
		t.Fatalf("since = head: %v", err)
	}
}

func TestResyncAndRetention(t *testing.T) {
	now := time.Unix(1e9, 0)
	b := New(Config{MinEvents: 10, MaxEvents: 40, MaxAge: time.Hour, Now: func() time.Time { return now }})
	for range 30 {
		b.Publish(ev("g"))
	}
	// Younger than MaxAge: the ring grew to keep them all.
	if f, l := b.Window(); f != 1 || l != 30 {
		t.Fatalf("window %d..%d, want 1..30", f, l)
	}
	now = now.Add(2 * time.Hour)
	for range 30 {
		b.Publish(ev("g"))
	}
	f, l := b.Window()
	if l != 60 || l-f+1 < 10 || f == 1 {
		t.Fatalf("window %d..%d", f, l)
	}
	s, _ := b.Subscribe(0, nil)
	if e := next(t, s); e.Type != api.EventResync || e.Seq != f {
		t.Fatalf("want resync at %d, got %+v", f, e)
	}
	if e := next(t, s); e.Seq != f {
		t.Fatalf("after resync: %+v", e)
	}
}

func TestFilter(t *testing.T) {
	b := New(Config{})
	s, _ := b.Subscribe(Live, func(e api.Event) bool { return e.Tenant == "acme" })
	b.Publish(api.Event{Type: api.EventLifecycle, Domain: "a", Tenant: "other"})
	b.Publish(api.Event{Type: api.EventLifecycle, Domain: "b", Tenant: "acme"})
	if e := next(t, s); e.Domain != "b" || e.Seq != 2 {
		t.Fatalf("filtered: %+v", e)
	}
	// What the filter drops is not "ready": a writer waiting for it would
	// hold back (not flush) what it already wrote.
	for _, c := range []struct {
		tenants []string
		ready   bool
	}{{nil, false}, {[]string{"other"}, false}, {[]string{"other", "other"}, false}, {[]string{"other", "acme"}, true}, {[]string{"acme"}, true}} {
		for _, tn := range c.tenants {
			b.Publish(api.Event{Type: api.EventLifecycle, Domain: "x", Tenant: tn})
		}
		if got := s.Ready(); got != c.ready {
			t.Fatalf("after %v: ready %v, want %v", c.tenants, got, c.ready)
		}
		if c.ready {
			if e := next(t, s); e.Tenant != "acme" {
				t.Fatalf("after %v: %+v", c.tenants, e)
			}
		}
	}
}

// A subscriber that stops reading is dropped with the seq to resume from;
// publishers never wait for it; resuming from that seq misses nothing.
func TestLaggingSubscriber(t *testing.T) {
	b := New(Config{MaxLag: 100})
	slow, _ := b.Subscribe(Live, nil)
	b.Publish(ev("g"))
	if e := next(t, slow); e.Seq != 1 {
		t.Fatal(e)
	}
	done := make(chan struct{})
	go func() {
		for range 1000 {
			b.Publish(ev("g"))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a slow subscriber")
	}
	e, err := slow.Next(context.Background())
	if !errors.Is(err, ErrLagged) || e.Type != api.EventLagged || e.Seq != 1 {
		t.Fatalf("want lagged at 1, got %+v %v", e, err)
	}
	again, err := b.Subscribe(e.Seq, nil)
	if err != nil {
		t.Fatal(err)
	}
	for want := uint64(2); want <= 1001; want++ {
		if got := next(t, again); got.Seq != want {
			t.Fatalf("resumed: seq %d, want %d", got.Seq, want)
		}
	}
}

// Many publishers and subscribers at once (run with -race): every
// subscriber sees every seq once, in order.
func TestConcurrent(t *testing.T) {
	b := New(Config{MaxLag: 1 << 20})
	const pubs, per, subs = 4, 2000, 8
	var wg sync.WaitGroup
	errs := make(chan error, subs)
	for range subs {
		s, _ := b.Subscribe(0, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for want := uint64(1); want <= pubs*per; want++ {
				e, err := s.Next(ctx)
				if err != nil || e.Seq != want {
					errs <- errors.New("out of order or failed")
					return
				}
			}
		}()
	}
	var pw sync.WaitGroup
	for range pubs {
		pw.Add(1)
		go func() {
			defer pw.Done()
			for range per {
				b.Publish(ev("g"))
			}
		}()
	}
	pw.Wait()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if b.Head() != pubs*per {
		t.Fatalf("head %d", b.Head())
	}
}

func TestNextHonoursContext(t *testing.T) {
	b := New(Config{})
	s, _ := b.Subscribe(Live, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	if s.Ready() {
		t.Fatal("ready with nothing published")
	}
}

// A bus continuing a previous daemon's seqs: the first is Start+1, each
// block of seqs is reserved before it is given, a since from before the
// restart is a resync, one past the head an error; after a Checkpoint the
// next event reserves anew.
func TestStartAndReserve(t *testing.T) {
	var reserved []uint64
	b := New(Config{Start: 100, Reserve: func(upto uint64) { reserved = append(reserved, upto) }})
	b.Publish(api.Event{Type: api.EventHost, Action: "daemon-started"})
	if b.Head() != 101 || len(reserved) != 1 || reserved[0] != 101+ReserveBlock {
		t.Fatalf("head %d, reserved %v", b.Head(), reserved)
	}
	for range 5 {
		b.Publish(api.Event{Type: api.EventHost})
	}
	if len(reserved) != 1 {
		t.Fatalf("reserved again within the block: %v", reserved)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, c := range []struct {
		since    uint64
		wantType string
		wantSeq  uint64
	}{
		{50, api.EventResync, 101},
		{100, api.EventHost, 101},
		{103, api.EventHost, 104},
	} {
		s, err := b.Subscribe(c.since, nil)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := s.Next(ctx)
		if err != nil || ev.Type != c.wantType || ev.Seq != c.wantSeq {
			t.Errorf("since=%d: %+v %v, want %s at %d", c.since, ev, err, c.wantType, c.wantSeq)
		}
	}
	if _, err := b.Subscribe(107, nil); err == nil {
		t.Error("since beyond the head was taken")
	}
	if got := b.Checkpoint(); got != 106 {
		t.Fatalf("checkpoint %d", got)
	}
	b.Publish(api.Event{Type: api.EventHost})
	if len(reserved) != 2 || reserved[1] != 107+ReserveBlock {
		t.Fatalf("after a checkpoint: %v", reserved)
	}
}
