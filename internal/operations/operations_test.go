package operations

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store/memstore"
)

func wait(t *testing.T, r *Registry, id string) api.Operation {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	op, err := r.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	return op
}

func start(t *testing.T, r *Registry, m Meta, fn Func) api.Operation {
	t.Helper()
	op, err := r.Start(m, fn)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

func TestSuccessFailurePanic(t *testing.T) {
	r := New(context.Background())
	ok := start(t, r, Meta{Kind: "save", Domain: "g1", Owner: "root"}, func(ctx context.Context, progress func(api.JobProgress)) (any, error) {
		progress(api.JobProgress{Phase: "copying", Done: 5, Total: 10})
		return map[string]int{"n": 1}, nil
	})
	if ok.Status != api.OpRunning || len(ok.ID) != 32 || ok.Owner != "root" || ok.Domain != "g1" {
		t.Fatalf("started: %+v", ok)
	}
	got := wait(t, r, ok.ID)
	if got.Status != api.OpSuccess || string(got.Result) != `{"n":1}` || got.Progress == nil || got.Progress.Done != 5 || got.Err() != nil {
		t.Fatalf("success: %+v", got)
	}
	bad := start(t, r, Meta{Kind: "export"}, func(context.Context, func(api.JobProgress)) (any, error) {
		return nil, api.Errorf(api.ErrNotFound, "no domain x")
	})
	got = wait(t, r, bad.ID)
	if got.Status != api.OpFailure || got.Class != "not-found" || !errors.Is(got.Err(), api.ErrNotFound) || got.Result != nil {
		t.Fatalf("failure: %+v", got)
	}
	boom := start(t, r, Meta{Kind: "clone"}, func(context.Context, func(api.JobProgress)) (any, error) { panic("boom") })
	if got = wait(t, r, boom.ID); got.Status != api.OpFailure || got.Class != "internal" {
		t.Fatalf("panic: %+v", got)
	}
	if l := r.List(); len(l) != 3 || l[0].ID != ok.ID {
		t.Fatalf("list: %+v", l)
	}
}

func TestCancel(t *testing.T) {
	r := New(context.Background())
	started := make(chan struct{})
	undone := false
	op := start(t, r, Meta{Kind: "migrate"}, func(ctx context.Context, _ func(api.JobProgress)) (any, error) {
		close(started)
		<-ctx.Done()
		undone = true
		return nil, fmt.Errorf("migration stopped: %w", ctx.Err())
	})
	<-started
	if err := r.Cancel(op.ID); err != nil {
		t.Fatal(err)
	}
	got := wait(t, r, op.ID)
	if got.Status != api.OpCancelled || !undone || got.Err() == nil {
		t.Fatalf("cancelled: %+v", got)
	}
	if err := r.Cancel(op.ID); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("cancel of a finished op: %v", err)
	}
	if err := r.Cancel("00112233445566778899aabbccddeeff"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("cancel of an unknown op: %v", err)
	}
	if _, err := r.Wait(context.Background(), "nope"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("wait on an unknown op: %v", err)
	}
	if _, ok := r.Get("nope"); ok {
		t.Fatal("get of an unknown op")
	}
}

// The daemon stopping cancels what runs; a job that finishes although
// cancelled is a success.
func TestBaseContextAndLateSuccess(t *testing.T) {
	base, stop := context.WithCancel(context.Background())
	r := New(base)
	op := start(t, r, Meta{Kind: "save"}, func(ctx context.Context, _ func(api.JobProgress)) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	stop()
	if got := wait(t, r, op.ID); got.Status != api.OpCancelled {
		t.Fatalf("daemon stop: %+v", got)
	}
	r = New(context.Background())
	release := make(chan struct{})
	op = start(t, r, Meta{Kind: "save"}, func(ctx context.Context, _ func(api.JobProgress)) (any, error) {
		<-release
		return "done", nil
	})
	r.Cancel(op.ID)
	close(release)
	if got := wait(t, r, op.ID); got.Status != api.OpSuccess {
		t.Fatalf("late success: %+v", got)
	}
}

func TestWaitTimeoutAndIDs(t *testing.T) {
	r := New(context.Background())
	release := make(chan struct{})
	op := start(t, r, Meta{Kind: "create"}, func(ctx context.Context, _ func(api.JobProgress)) (any, error) {
		<-release
		return nil, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	got, err := r.Wait(ctx, op.ID)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || got.Status != api.OpRunning {
		t.Fatalf("wait timeout: %v %+v", err, got)
	}
	close(release)
	wait(t, r, op.ID)
	seen := map[string]bool{}
	for range 1000 {
		id := newID()
		if seen[id] || len(id) != 32 {
			t.Fatalf("id %q repeated or short", id)
		}
		seen[id] = true
	}
}

// Finished operations go after Keep, and beyond MaxDone the oldest go
// first; running ones stay.
func TestPrune(t *testing.T) {
	r := New(context.Background())
	r.MaxDone = 3
	release := make(chan struct{})
	running := start(t, r, Meta{Kind: "migrate"}, func(ctx context.Context, _ func(api.JobProgress)) (any, error) {
		<-release
		return nil, nil
	})
	var ids []string
	for range 5 {
		op := start(t, r, Meta{Kind: "save"}, func(context.Context, func(api.JobProgress)) (any, error) { return nil, nil })
		wait(t, r, op.ID)
		ids = append(ids, op.ID)
		time.Sleep(time.Millisecond)
	}
	l := r.List()
	if len(l) != 4 {
		t.Fatalf("kept %d, want the running one and 3 finished", len(l))
	}
	if _, ok := r.Get(ids[0]); ok {
		t.Fatal("the oldest finished op was kept")
	}
	if _, ok := r.Get(ids[4]); !ok {
		t.Fatal("the newest finished op was dropped")
	}
	r.Keep = 0
	time.Sleep(time.Millisecond)
	if l := r.List(); len(l) != 1 || l[0].ID != running.ID {
		t.Fatalf("after Keep: %+v", l)
	}
	close(release)
}

// Many operations, their progress, lists, waits and cancels at once (run
// with -race).
func TestConcurrent(t *testing.T) {
	r := New(context.Background())
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			op := start(t, r, Meta{Kind: "export"}, func(ctx context.Context, progress func(api.JobProgress)) (any, error) {
				for j := range 50 {
					if ctx.Err() != nil {
						return nil, ctx.Err()
					}
					progress(api.JobProgress{Done: int64(j)})
				}
				return i, nil
			})
			if i%3 == 0 {
				r.Cancel(op.ID)
			}
			r.List()
			r.Get(op.ID)
			if got := wait(t, r, op.ID); !got.Done() {
				t.Errorf("not done: %+v", got)
			}
		}()
	}
	wg.Wait()
}

// At most MaxRunning run at once; a finished one frees its place.
func TestMaxRunning(t *testing.T) {
	r := New(context.Background())
	r.MaxRunning = 2
	release := make(chan struct{})
	block := func(ctx context.Context, _ func(api.JobProgress)) (any, error) {
		<-release
		return nil, nil
	}
	a := start(t, r, Meta{}, block)
	start(t, r, Meta{}, block)
	if _, err := r.Start(Meta{}, block); !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("a third at once: %v", err)
	}
	close(release)
	wait(t, r, a.ID)
	for _, op := range r.List() {
		wait(t, r, op.ID)
	}
	start(t, r, Meta{}, func(context.Context, func(api.JobProgress)) (any, error) { return nil, nil })
}

// Records outlive the registry: a new one (a restarted daemon) shows the
// finished operation with its result and the running one as
// interrupted; pruning deletes records.
func TestRecordsAcrossRestart(t *testing.T) {
	st := memstore.New()
	r := New(context.Background())
	if err := r.Open(context.Background(), st, time.Now()); err != nil {
		t.Fatal(err)
	}
	done := start(t, r, Meta{Kind: "save", Domain: "g1", Owner: "root"}, func(context.Context, func(api.JobProgress)) (any, error) {
		return map[string]int{"n": 7}, nil
	})
	wait(t, r, done.ID)
	release := make(chan struct{})
	defer close(release)
	running := start(t, r, Meta{Kind: "migrate", Domain: "g2", Owner: "ops", Tenant: "t1"}, func(ctx context.Context, _ func(api.JobProgress)) (any, error) {
		<-release
		return nil, nil
	})
	restart := time.Now().Add(time.Minute).Truncate(time.Second)
	r2 := New(context.Background())
	if err := r2.Open(context.Background(), st, restart); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id, status, result, errText string
	}{
		{done.ID, api.OpSuccess, `{"n":7}`, ""},
		{running.ID, api.OpFailure, "", "interrupted: the daemon restarted at " + restart.UTC().Format(time.RFC3339)},
	} {
		got, ok := r2.Get(c.id)
		if !ok || got.Status != c.status || string(got.Result) != c.result || got.Error != c.errText || !got.Done() {
			t.Errorf("after the restart, %s: %+v (found %v)", c.id, got, ok)
		}
		if _, err := r2.Wait(context.Background(), c.id); err != nil {
			t.Errorf("wait on a record: %v", err)
		}
	}
	if got, _ := r2.Get(running.ID); got.Tenant != "t1" || got.Owner != "ops" {
		t.Errorf("the record lost who it was for: %+v", got)
	}
	r2.Keep = -time.Hour // everything finished is now too old
	r2.List()
	if kvs, _ := st.List(context.Background(), keyPrefix); len(kvs) != 0 {
		t.Errorf("pruned operations kept their records: %d", len(kvs))
	}
}
