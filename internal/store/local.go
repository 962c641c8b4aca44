package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// keepEvents is how many recent changes a single-host store keeps for
// watches that start in the past (etcd keeps its own history).
const keepEvents = 1024

// Local is the in-process half of a single-host store (Bolt, memstore):
// watches fed by the store's own commits, and leases on this process's
// clock (they end with the process, as a host's lease would).
type Local struct {
	mu     sync.Mutex
	rev    int64   // last committed revision
	recent []Event // the last keepEvents changes, oldest first
	subs   map[*watcher]struct{}
	leases map[LeaseID]*lease
	next   LeaseID
	// expired deletes a lease's keys once its time is up (the store's own
	// transaction; called without mu).
	expired func(LeaseID)
}

type lease struct {
	ttl   time.Duration
	timer *time.Timer
}

type watcher struct {
	prefix string
	mu     sync.Mutex
	queue  []Event
	wake   chan struct{}
}

// NewLocal starts at revision rev; expired is called when a lease runs out.
func NewLocal(rev int64, expired func(LeaseID)) *Local {
	return &Local{rev: rev, subs: map[*watcher]struct{}{}, leases: map[LeaseID]*lease{},
		next: LeaseID(time.Now().UnixNano() & 0x7fffffffffff), expired: expired}
}

// Rev is the last committed revision.
func (l *Local) Rev() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}

// Committed records the changes of one commit at revision rev (the
// store calls it in revision order, under its write lock) and hands them
// to the watches.
func (l *Local) Committed(rev int64, changes []Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rev = rev
	l.recent = append(l.recent, changes...)
	if n := len(l.recent) - keepEvents; n > 0 {
		l.recent = append([]Event(nil), l.recent[n:]...)
	}
	for w := range l.subs {
		w.push(changes)
	}
}

// Watch implements Store.Watch.
func (l *Local) Watch(ctx context.Context, prefix string, after int64) (<-chan Event, error) {
	w := &watcher{prefix: prefix, wake: make(chan struct{}, 1)}
	l.mu.Lock()
	switch {
	case after == 0:
	case len(l.recent) > 0 && after < l.recent[0].Rev-1, len(l.recent) == 0 && after < l.rev:
		w.queue = []Event{{Err: fmt.Errorf("watching %q after revision %d: %w", prefix, after, ErrCompacted)}}
	default:
		var past []Event
		for _, e := range l.recent {
			if e.Rev > after {
				past = append(past, e)
			}
		}
		w.push(past)
	}
	l.subs[w] = struct{}{}
	l.mu.Unlock()
	ch := make(chan Event)
	go func() {
		defer close(ch)
		defer func() { l.mu.Lock(); delete(l.subs, w); l.mu.Unlock() }()
		w.deliver(ctx, ch)
	}()
	return ch, nil
}

// push queues the changes under the watcher's prefix (never blocks).
func (w *watcher) push(changes []Event) {
	w.mu.Lock()
	for _, e := range changes {
		if strings.HasPrefix(e.Key, w.prefix) {
			w.queue = append(w.queue, e)
		}
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) deliver(ctx context.Context, ch chan<- Event) {
	select {
	case w.wake <- struct{}{}: // what Watch queued from the past
	default:
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		}
		w.mu.Lock()
		q := w.queue
		w.queue = nil
		w.mu.Unlock()
		for _, e := range q {
			select {
			case ch <- e:
			case <-ctx.Done():
				return
			}
			if e.Err != nil {
				return
			}
		}
	}
}

// Grant implements Store.Grant.
func (l *Local) Grant(ttl time.Duration) (LeaseID, error) {
	if ttl < time.Second {
		return 0, fmt.Errorf("a lease of %s: it must last at least 1s", ttl)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next++
	id := l.next
	le := &lease{ttl: ttl}
	le.timer = time.AfterFunc(ttl, func() { l.end(id, le) })
	l.leases[id] = le
	return id, nil
}

// end drops a lease whose time ran out, unless it was renewed meanwhile.
func (l *Local) end(id LeaseID, le *lease) {
	l.mu.Lock()
	if l.leases[id] != le {
		l.mu.Unlock()
		return
	}
	delete(l.leases, id)
	l.mu.Unlock()
	l.expired(id)
}

// KeepAlive implements Store.KeepAlive.
func (l *Local) KeepAlive(id LeaseID) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	le, ok := l.leases[id]
	if !ok || !le.timer.Stop() {
		return ErrNoLease
	}
	le.timer.Reset(le.ttl)
	return nil
}

// Alive says whether a lease is still live (a PutLeased checks it).
func (l *Local) Alive(id LeaseID) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.leases[id]; !ok {
		return fmt.Errorf("lease %x: %w", int64(id), ErrNoLease)
	}
	return nil
}

// Revoke ends a lease now; the store then deletes its keys.
func (l *Local) Revoke(id LeaseID) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	le, ok := l.leases[id]
	if !ok {
		return ErrNoLease
	}
	le.timer.Stop()
	delete(l.leases, id)
	return nil
}

// Close ends every lease without deleting anything (the keys go when the
// store is next opened: a lease never outlives its process).
func (l *Local) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, le := range l.leases {
		le.timer.Stop()
		delete(l.leases, id)
	}
}
