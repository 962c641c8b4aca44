package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/store"
)

// The parts of the contract a cluster relies on: revisions, compare-and-
// swap, watches and leases.

// rev is key's revision as List reports it (0: missing).
func rev(t *testing.T, s store.Store, key string) int64 {
	t.Helper()
	kvs, err := s.List(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Rev
		}
	}
	return 0
}

func txRev(t *testing.T, s store.Store, key string) int64 {
	t.Helper()
	var r int64
	if err := s.Update(ctx, func(tx store.Tx) error {
		var err error
		r, err = tx.Rev(key)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return r
}

func testRevisions(t *testing.T, s store.Store) {
	if r := txRev(t, s, "a"); r != 0 {
		t.Fatalf("Rev of a missing key = %d, want 0", r)
	}
	put(t, s, "a", "1")
	r1 := rev(t, s, "a")
	put(t, s, "b", "1")
	put(t, s, "a", "2")
	r2, rb := rev(t, s, "a"), rev(t, s, "b")
	if !(r1 > 0 && rb > r1 && r2 > rb) {
		t.Fatalf("revisions a=%d, b=%d, a again=%d: want each write later than the last", r1, rb, r2)
	}
	if tr := txRev(t, s, "a"); tr != r2 {
		t.Fatalf("Tx.Rev(a) = %d, List says %d", tr, r2)
	}
	// One Update is one revision for all its keys.
	s.Update(ctx, func(tx store.Tx) error { tx.Put("x", []byte("1")); return tx.Put("y", []byte("1")) })
	if rx, ry := rev(t, s, "x"), rev(t, s, "y"); rx != ry || rx <= r2 {
		t.Fatalf("one Update wrote x at %d and y at %d (after %d)", rx, ry, r2)
	}
}

func testCAS(t *testing.T, s store.Store) {
	if err := store.CompareAndSwap(ctx, s, "owner/g1", 0, []byte("h1"), 0); err != nil {
		t.Fatalf("creating with rev 0: %v", err)
	}
	if err := store.CompareAndSwap(ctx, s, "owner/g1", 0, []byte("h2"), 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("creating an existing key: %v, want ErrConflict", err)
	}
	r := rev(t, s, "owner/g1")
	if err := store.CompareAndSwap(ctx, s, "owner/g1", r+1, []byte("h2"), 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("swapping at a wrong revision: %v, want ErrConflict", err)
	}
	want(t, s, "owner/g1", "h1")
	if err := store.CompareAndSwap(ctx, s, "owner/g1", r, []byte("h2"), 0); err != nil {
		t.Fatalf("swapping at the right revision: %v", err)
	}
	want(t, s, "owner/g1", "h2")
	// Racers on one revision: exactly one wins.
	r = rev(t, s, "owner/g1")
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := store.CompareAndSwap(ctx, s, "owner/g1", r, []byte("r"+strconv.Itoa(i)), 0)
			if err == nil {
				won.Add(1)
			} else if !errors.Is(err, store.ErrConflict) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d racers swapped the same revision, want exactly 1", won.Load())
	}
}

// testListConflict: a tx that decided from a List does not commit over a
// key added under that prefix meanwhile (a placement counting hosts'
// domains must not oversell). Another writer adds a key between the read
// and the commit; a locking store makes it wait, an optimistic one runs
// fn again: either way the count matches the keys written before it.
func testListConflict(t *testing.T, s store.Store) {
	put(t, s, "dom/a", "1")
	done := make(chan error, 1)
	runs := 0
	err := s.Update(ctx, func(tx store.Tx) error {
		runs++
		kvs, err := tx.List("dom/")
		if err != nil {
			return err
		}
		if runs == 1 {
			go func() { done <- store.Put(ctx, s, "dom/b", []byte("1")) }()
			select { // an optimistic store lets it through at once
			case err := <-done:
				done <- err
			case <-time.After(300 * time.Millisecond):
			}
		}
		return tx.Put("count", []byte(strconv.Itoa(len(kvs))))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	countRev := rev(t, s, "count")
	kvs, _ := s.List(ctx, "dom/")
	before := 0
	for _, kv := range kvs {
		if kv.Rev < countRev {
			before++
		}
	}
	want(t, s, "count", strconv.Itoa(before))
}

// next reads one event or fails after a while.
func next(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("the watch closed")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return store.Event{}
}

func describe(e store.Event) string {
	if e.Err != nil {
		return "error " + e.Err.Error()
	}
	return fmt.Sprintf("%d %s=%s", e.Type, e.Key, e.Value)
}

func testWatch(t *testing.T, s store.Store) {
	c, cancel := context.WithCancel(ctx)
	ch, err := s.Watch(c, "dom/", 0)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "other", "x")
	put(t, s, "dom/a", "1")
	store.Delete(ctx, s, "dom/a")
	store.Delete(ctx, s, "dom/missing")
	put(t, s, "dom/b", "2")
	var got []string
	for range 3 {
		got = append(got, describe(next(t, ch)))
	}
	w := fmt.Sprint([]string{
		fmt.Sprintf("%d dom/a=1", store.EventPut), fmt.Sprintf("%d dom/a=", store.EventDelete), fmt.Sprintf("%d dom/b=2", store.EventPut)})
	if fmt.Sprint(got) != w {
		t.Fatalf("events %v, want %v", got, w)
	}
	cancel()
	for range ch { // closes once ctx ends
	}
}

func testWatchFrom(t *testing.T, s store.Store) {
	put(t, s, "dom/a", "1")
	r := rev(t, s, "dom/a")
	put(t, s, "dom/a", "2")
	put(t, s, "dom/b", "3")
	c, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.Watch(c, "dom/", r)
	if err != nil {
		t.Fatal(err)
	}
	if e1, e2 := next(t, ch), next(t, ch); e1.Key != "dom/a" || string(e1.Value) != "2" || e2.Key != "dom/b" || e2.Rev <= e1.Rev {
		t.Fatalf("events after %d: %s, %s; want the two later writes in order", r, describe(e1), describe(e2))
	}
}

func testLeases(t *testing.T, s store.Store) {
	id, err := s.Grant(ctx, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.PutLeased("hosts/h1", []byte("up"), id) }); err != nil {
		t.Fatal(err)
	}
	put(t, s, "hosts/plain", "x")
	// Renewed, it outlives its TTL.
	for range 4 {
		time.Sleep(time.Second)
		if err := s.KeepAlive(ctx, id); err != nil {
			t.Fatalf("renewing a live lease: %v", err)
		}
	}
	want(t, s, "hosts/h1", "up")
	// Not renewed, it ends and takes its keys, and only them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := s.Get(ctx, "hosts/h1"); errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a lease not renewed did not take its key within 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	want(t, s, "hosts/plain", "x")
	if err := s.KeepAlive(ctx, id); !errors.Is(err, store.ErrNoLease) {
		t.Fatalf("renewing an ended lease: %v, want ErrNoLease", err)
	}
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.PutLeased("hosts/h1", []byte("up"), id) }); !errors.Is(err, store.ErrNoLease) {
		t.Fatalf("writing with an ended lease: %v, want ErrNoLease", err)
	}
	// Revoked, its keys go at once.
	id2, _ := s.Grant(ctx, time.Minute)
	s.Update(ctx, func(tx store.Tx) error { return tx.PutLeased("hosts/h2", []byte("up"), id2) })
	if err := s.Revoke(ctx, id2); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, s, "hosts/h2")
}
