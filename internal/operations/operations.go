// Package operations runs the daemon's long jobs (create, save, restore,
// migrate, export, import, snapshot, clone, shutdown -w) as operations: a
// job started here runs under the daemon's lifetime, not the request that
// asked for it, so it goes on when the client disconnects; it can be
// waited for, watched (its progress), listed and cancelled by an
// unguessable id. Finished operations are kept a while (Keep, at most
// MaxDone of them) for a client that comes back for the result, in the
// store too once Open has given the registry one (persist.go), so they
// outlive a restart of the daemon.
package operations

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store"
)

// Func is an operation's job. It must honour ctx (a cancel, the daemon
// stopping) and may report progress as often as it likes.
type Func func(ctx context.Context, progress func(api.JobProgress)) (any, error)

// Meta describes an operation as it starts.
type Meta struct {
	Kind, Domain  string
	Owner, Tenant string
}

// Defaults: finished operations are kept 10 minutes, at most 1000 of
// them; at most 64 run at once (a request no longer holds a connection
// for its job, so the listeners' connection caps no longer bound them).
const (
	DefaultKeep       = 10 * time.Minute
	DefaultMaxDone    = 1000
	DefaultMaxRunning = 64
)

// Registry holds the operations of one daemon.
type Registry struct {
	base context.Context
	// Keep is how long a finished operation stays; MaxDone bounds how
	// many finished ones stay (the oldest go first); MaxRunning how many
	// run at once.
	Keep       time.Duration
	MaxDone    int
	MaxRunning int
	// OnError hears of a record the store could not write (persist.go).
	OnError func(error)

	mu  sync.Mutex
	ops map[string]*op
	st  store.Store // where the records are kept (nil: none; Open)
}

// op is one operation: its public view (under Registry.mu) and its life.
type op struct {
	view      api.Operation
	cancel    context.CancelFunc
	cancelled bool
	done      chan struct{}
}

// New makes a registry whose operations run under base (the daemon's
// lifetime: they end when it does).
func New(base context.Context) *Registry {
	return &Registry{base: base, Keep: DefaultKeep, MaxDone: DefaultMaxDone, MaxRunning: DefaultMaxRunning, ops: map[string]*op{}}
}

// newID is 128 random bits in hex.
func newID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}

// Start runs fn as a new operation and returns it as it starts;
// api.ErrUnavailable when MaxRunning already run.
func (r *Registry) Start(m Meta, fn Func) (api.Operation, error) {
	now := time.Now().UTC()
	r.mu.Lock()
	dropped := r.pruneLocked(now)
	defer r.unpersist(dropped)
	if n := r.runningLocked(); n >= r.MaxRunning {
		r.mu.Unlock()
		return api.Operation{}, api.Errorf(api.ErrUnavailable, "%d operations are running, the most at once: wait for some to end", n)
	}
	ctx, cancel := context.WithCancel(r.base)
	o := &op{cancel: cancel, done: make(chan struct{}), view: api.Operation{
		ID: newID(), Kind: m.Kind, Domain: m.Domain, Status: api.OpRunning,
		Created: now, Updated: now, Owner: m.Owner, Tenant: m.Tenant,
	}}
	r.ops[o.view.ID] = o
	view := o.view
	r.mu.Unlock()
	r.persist(view) // before run can write its end
	go r.run(ctx, o, fn)
	return view, nil
}

func (r *Registry) runningLocked() int {
	n := 0
	for _, o := range r.ops {
		if !o.view.Done() {
			n++
		}
	}
	return n
}

// run is an operation's goroutine: the job, then its end recorded.
func (r *Registry) run(ctx context.Context, o *op, fn Func) {
	defer o.cancel()
	res, err := call(ctx, fn, func(p api.JobProgress) {
		r.mu.Lock()
		o.view.Progress = &p
		o.view.Updated = time.Now().UTC()
		r.mu.Unlock()
	})
	var raw json.RawMessage
	if err == nil {
		if raw, err = json.Marshal(res); err != nil {
			err = fmt.Errorf("encoding the result: %w", err)
		}
	}
	r.mu.Lock()
	o.view.Updated = time.Now().UTC()
	switch {
	case err == nil:
		o.view.Status, o.view.Result = api.OpSuccess, raw
	case o.cancelled || ctx.Err() != nil:
		o.view.Status = api.OpCancelled
	default:
		o.view.Status = api.OpFailure
	}
	if err != nil {
		_, o.view.Class = api.StatusOf(err)
		o.view.Error = err.Error()
	}
	view := o.view
	r.mu.Unlock()
	// Recorded before a waiter hears of it: a restart right after the
	// answer still shows the end.
	r.persist(view)
	close(o.done)
}

// call runs fn; a panic in it fails the operation instead of the daemon.
func call(ctx context.Context, fn Func, progress func(api.JobProgress)) (res any, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("operation failed: internal error: %v", p)
		}
	}()
	return fn(ctx, progress)
}

// Get returns an operation as it is now.
func (r *Registry) Get(id string) (api.Operation, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.ops[id]
	if !ok {
		return api.Operation{}, false
	}
	return o.view, true
}

// List returns every operation kept, oldest first.
func (r *Registry) List() []api.Operation {
	r.mu.Lock()
	dropped := r.pruneLocked(time.Now())
	out := make([]api.Operation, 0, len(r.ops))
	for _, o := range r.ops {
		out = append(out, o.view)
	}
	r.mu.Unlock()
	r.unpersist(dropped)
	slices.SortFunc(out, func(a, b api.Operation) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// Wait blocks until the operation ends or ctx does, and returns it as it
// is then (with ctx's error in the second case); api.ErrNotFound when
// there is no such operation.
func (r *Registry) Wait(ctx context.Context, id string) (api.Operation, error) {
	r.mu.Lock()
	o, ok := r.ops[id]
	r.mu.Unlock()
	if !ok {
		return api.Operation{}, notFound(id)
	}
	var err error
	select {
	case <-o.done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return o.view, err
}

// Cancel asks a running operation to stop (its job's context is
// cancelled; it ends as cancelled once the job has undone its work).
// api.ErrNotFound for no such operation, api.ErrConflict for one that
// has already ended.
func (r *Registry) Cancel(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.ops[id]
	if !ok {
		return notFound(id)
	}
	if o.view.Done() {
		return api.Errorf(api.ErrConflict, "operation %s has already ended (%s)", id, o.view.Status)
	}
	o.cancelled = true
	o.cancel()
	return nil
}

func notFound(id string) error {
	if len(id) > 64 {
		id = id[:64] + "..."
	}
	return api.Errorf(api.ErrNotFound, "no operation %q", id)
}

// pruneLocked drops finished operations older than Keep, then the oldest
// finished ones over MaxDone, and returns their ids (whose records the
// caller deletes, outside the lock). Running ones always stay.
func (r *Registry) pruneLocked(now time.Time) []string {
	var done []*op
	var dropped []string
	for id, o := range r.ops {
		if !o.view.Done() {
			continue
		}
		if now.Sub(o.view.Updated) > r.Keep {
			delete(r.ops, id)
			dropped = append(dropped, id)
			continue
		}
		done = append(done, o)
	}
	if len(done) <= r.MaxDone {
		return dropped
	}
	slices.SortFunc(done, func(a, b *op) int { return a.view.Updated.Compare(b.view.Updated) })
	for _, o := range done[:len(done)-r.MaxDone] {
		delete(r.ops, o.view.ID)
		dropped = append(dropped, o.view.ID)
	}
	return dropped
}
