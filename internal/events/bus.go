// Package events is the daemon's event bus: every event published gets
// the next sequence number and is kept in a retained window (a ring of at
// least MinEvents, grown to keep at least MaxAge of them up to MaxEvents),
// from which subscribers read at their own pace.
//
// Publish is O(1) (amortised over the ring's growth) and never blocks: it
// stores the event and wakes the readers. Each subscription is a cursor
// into the window; its backlog is bounded (MaxLag): a reader that falls
// further behind is told "lagged" (with the seq to resume from) and
// dropped, and never slows the publishers or the other readers.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// Defaults of Config.
const (
	DefaultMinEvents = 10_000
	DefaultMaxEvents = 1_000_000
	DefaultMaxAge    = time.Hour
	DefaultMaxLag    = 4096
)

// Config sizes a Bus; zero fields take the defaults.
type Config struct {
	MinEvents int           // always kept
	MaxAge    time.Duration // kept too when younger than this...
	MaxEvents int           // ...up to this many
	MaxLag    int           // a subscriber's backlog beyond which it is dropped
	Now       func() time.Time
	// Start is the seq the previous daemon reached (0: none): the first
	// event here is Start+1, so seqs never repeat across restarts and a
	// since from before the restart is answered with a resync.
	Start uint64
	// Reserve, when set, is told the highest seq that may be given out
	// before it is called again (seq + ReserveBlock, each time the head
	// reaches the last): it keeps that number where the next daemon
	// reads its Start, so a daemon that dies never lets the next one give
	// a seq twice. Publish waits for it once per ReserveBlock events.
	Reserve func(upto uint64)
}

// ReserveBlock is how many seqs one Reserve call covers.
const ReserveBlock = 10_000

// Live is the since of a subscription that wants only what comes next.
const Live = ^uint64(0)

// ErrLagged ends a subscription that fell behind by more than MaxLag.
var ErrLagged = errors.New("lagged")

// Bus is the event bus. The zero value is not usable: see New.
type Bus struct {
	cfg   Config
	mu    sync.Mutex
	buf   []entry // ring: seq s is at buf[s%len(buf)]
	first uint64  // oldest seq held (head+1 when none)
	head  uint64  // last seq published (0: none yet)
	wake  chan struct{}
	// reserved is the highest seq Reserve has covered.
	reserved uint64
}

// entry is an event and its JSON line, encoded once for every reader.
type entry struct {
	ev   api.Event
	line []byte
}

func newEntry(ev api.Event) entry {
	b, _ := json.Marshal(ev)
	return entry{ev, append(b, '\n')}
}

// New makes a bus.
func New(cfg Config) *Bus {
	if cfg.MinEvents <= 0 {
		cfg.MinEvents = DefaultMinEvents
	}
	if cfg.MaxEvents < cfg.MinEvents {
		cfg.MaxEvents = max(DefaultMaxEvents, cfg.MinEvents)
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.MaxLag <= 0 {
		cfg.MaxLag = DefaultMaxLag
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Bus{cfg: cfg, buf: make([]entry, cfg.MinEvents), first: cfg.Start + 1, head: cfg.Start, reserved: cfg.Start, wake: make(chan struct{})}
}

// Publish gives ev the next seq (and the time, when unset), keeps it and
// wakes the subscribers. It never blocks on a subscriber.
func (b *Bus) Publish(ev api.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now()
	if ev.Time.IsZero() {
		ev.Time = now
	}
	if held := b.head - b.first + 1; held == uint64(len(b.buf)) {
		oldest := b.buf[b.first%uint64(len(b.buf))].ev
		if len(b.buf) < b.cfg.MaxEvents && now.Sub(oldest.Time) < b.cfg.MaxAge {
			b.grow(min(2*len(b.buf), b.cfg.MaxEvents))
		} else {
			b.buf[b.first%uint64(len(b.buf))] = entry{}
			b.first++
		}
	}
	b.head++
	if b.cfg.Reserve != nil && b.head > b.reserved {
		b.reserved = b.head + ReserveBlock
		b.cfg.Reserve(b.reserved)
	}
	ev.Seq = b.head
	b.buf[b.head%uint64(len(b.buf))] = newEntry(ev)
	close(b.wake)
	b.wake = make(chan struct{})
}

// grow moves the ring to n slots. Caller holds b.mu.
func (b *Bus) grow(n int) {
	nb := make([]entry, n)
	for s := b.first; s <= b.head; s++ {
		nb[s%uint64(n)] = b.buf[s%uint64(len(b.buf))]
	}
	b.buf = nb
}

// Head is the last seq published (0: none yet).
func (b *Bus) Head() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.head
}

// Checkpoint returns the head for a clean stop to record as the next
// daemon's Start; an event published after it is reserved anew first.
func (b *Bus) Checkpoint() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reserved = b.head
	return b.head
}

// Window is the oldest and newest seq held (first > last: none).
func (b *Bus) Window() (first, last uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.first, b.head
}

// Sub is one subscriber's cursor. Its methods are for one goroutine.
type Sub struct {
	b      *Bus
	next   uint64 // the next seq to read
	limit  uint64 // the backlog allowed now (larger while replaying)
	filter func(api.Event) bool
	resync bool // the first event to give is a resync
}

// Subscribe reads from since+1 (Live: from the next event published).
// A since older than the window starts with a "resync" event whose Seq is
// the oldest held; a since beyond the head is an error. filter (nil: all)
// says which events this subscriber may see.
func (b *Bus) Subscribe(since uint64, filter func(api.Event) bool) (*Sub, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if since == Live {
		since = b.head
	}
	if since > b.head {
		return nil, api.Errorf(api.ErrInvalid, "since=%d is beyond the newest event (%d): resume from a seq this daemon gave, or omit since", since, b.head)
	}
	s := &Sub{b: b, next: since + 1, filter: filter, limit: uint64(b.cfg.MaxLag)}
	if s.next < b.first {
		s.next, s.resync = b.first, true
	}
	s.limit = max(s.limit, b.head+1-s.next)
	return s, nil
}

// Next is the next event the subscriber may see, waiting for one until
// ctx ends. A subscriber that fell behind gets an event of type "lagged"
// (Seq: resume with since=Seq) and ErrLagged; it is done.
func (s *Sub) Next(ctx context.Context) (api.Event, error) {
	ev, _, err := s.NextOr(ctx, nil)
	return ev, err
}

// NextOr is Next that also returns, with ok false, when beat fires while
// it waits (a writer's heartbeat).
func (s *Sub) NextOr(ctx context.Context, beat <-chan time.Time) (api.Event, bool, error) {
	e, ok, err := s.nextEntry(ctx, beat)
	return e.ev, ok, err
}

// nextEntry is NextOr with the event's JSON line (for the stream).
func (s *Sub) nextEntry(ctx context.Context, beat <-chan time.Time) (entry, bool, error) {
	for {
		s.b.mu.Lock()
		e, ok, err := s.take()
		wake := s.b.wake
		s.b.mu.Unlock()
		if err != nil || ok && (e.ev.Type == api.EventResync || s.filter == nil || s.filter(e.ev)) {
			return e, err == nil, err
		}
		if ok {
			continue
		}
		select {
		case <-wake:
		case <-beat:
			return entry{}, false, nil
		case <-ctx.Done():
			return entry{}, false, ctx.Err()
		}
	}
}

// take is the entry at the cursor, if any. Caller holds s.b.mu.
func (s *Sub) take() (entry, bool, error) {
	b := s.b
	if s.resync {
		s.resync = false
		return newEntry(api.Event{Seq: b.first, Time: b.cfg.Now(), Type: api.EventResync,
			Detail: "events before this seq are no longer held: re-read the state you track"}), true, nil
	}
	if s.next > b.head {
		return entry{}, false, nil
	}
	backlog := b.head + 1 - s.next
	if s.next < b.first || backlog > s.limit {
		n := s.next - 1
		return newEntry(api.Event{Seq: n, Time: b.cfg.Now(), Type: api.EventLagged,
			Detail: "lagged: reconnect with since=" + strconv.FormatUint(n, 10)}), false, ErrLagged
	}
	if backlog <= uint64(b.cfg.MaxLag) {
		s.limit = uint64(b.cfg.MaxLag) // caught up with the replay
	}
	e := b.buf[s.next%uint64(len(b.buf))]
	s.next++
	return e, true, nil
}

// Ready reports whether Next would return at once (an event or more is
// published past the cursor): a writer flushes when it is not. Events
// the filter drops are stepped over here: counted as ready, they kept a
// writer from flushing what it had written while Next went on to wait
// (a tenant's last events held back until its next one, or the
// heartbeat).
func (s *Sub) Ready() bool {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	b := s.b
	for s.filter != nil && !s.resync && s.next >= b.first && s.next <= b.head {
		if e := b.buf[s.next%uint64(len(b.buf))]; s.filter(e.ev) {
			break
		}
		s.next++
	}
	return s.resync || s.next <= b.head
}

// Last is the seq of the last event read (filtered out or not).
func (s *Sub) Last() uint64 { return s.next - 1 }
