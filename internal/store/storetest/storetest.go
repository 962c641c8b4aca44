// Package storetest is the conformance suite of store.Store: what the
// daemon relies on from any state store (bbolt now, etcd for a cluster,
// the in-memory one of the manager's unit tests), asserted the same way
// against each.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/ringfence/ringfence/internal/store"
)

// Opener makes a store for one subtest. It returns a fresh, empty store;
// and reopen, when the store is durable, which opens it again after the
// suite has closed it (nil: not durable, that subtest is skipped).
type Opener func(t *testing.T) (s store.Store, reopen func(t *testing.T) store.Store)

// Run runs the suite; every subtest opens its own store.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"MissingKey", testMissing},
		{"PutGetOverwrite", testPutGet},
		{"ValuesAreCopies", testCopies},
		{"DeleteIdempotent", testDelete},
		{"ListByPrefixInOrder", testList},
		{"TxSeesItsOwnWrites", testTxOwnWrites},
		{"FailedUpdateWritesNothing", testAtomic},
		{"UpdatesAreSerializable", testSerializable},
		{"Revisions", testRevisions},
		{"CompareAndSwap", testCAS},
		{"ListedPrefixConflicts", testListConflict},
		{"Watch", testWatch},
		{"WatchFromRevision", testWatchFrom},
		{"Leases", testLeases},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := open(t)
			defer s.Close()
			tc.fn(t, s)
		})
	}
	t.Run("Durable", func(t *testing.T) {
		s, reopen := open(t)
		if reopen == nil {
			s.Close()
			t.Skip("not a durable store")
		}
		testDurable(t, s, reopen)
	})
}

var ctx = context.Background()

func put(t *testing.T, s store.Store, k, v string) {
	t.Helper()
	if err := store.Put(ctx, s, k, []byte(v)); err != nil {
		t.Fatalf("Put %s: %v", k, err)
	}
}

// want asserts key holds value.
func want(t *testing.T, s store.Store, key, value string) {
	t.Helper()
	v, err := s.Get(ctx, key)
	if err != nil || string(v) != value {
		t.Fatalf("Get %s = %q, %v; want %q", key, v, err, value)
	}
}

// wantMissing asserts key is not there, as store.ErrNotFound.
func wantMissing(t *testing.T, s store.Store, key string) {
	t.Helper()
	if v, err := s.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get %s = %q, %v; want store.ErrNotFound", key, v, err)
	}
}

func testMissing(t *testing.T, s store.Store) {
	wantMissing(t, s, "domains/a")
	err := s.Update(ctx, func(tx store.Tx) error {
		_, err := tx.Get("domains/a")
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Tx.Get of a missing key: %v, want store.ErrNotFound", err)
	}
	kvs, err := s.List(ctx, "domains/")
	if err != nil || len(kvs) != 0 {
		t.Fatalf("List of an empty store: %+v, %v", kvs, err)
	}
}

func testPutGet(t *testing.T, s store.Store) {
	put(t, s, "domains/a", "1")
	want(t, s, "domains/a", "1")
	put(t, s, "domains/a", "2")
	want(t, s, "domains/a", "2")
	// An empty value is a value, not a missing key.
	put(t, s, "domains/e", "")
	if v, err := s.Get(ctx, "domains/e"); err != nil || len(v) != 0 {
		t.Fatalf("Get of an empty value = %q, %v", v, err)
	}
}

func testCopies(t *testing.T, s store.Store) {
	in := []byte("abc")
	if err := store.Put(ctx, s, "k", in); err != nil {
		t.Fatal(err)
	}
	in[0] = 'X'
	want(t, s, "k", "abc")
	v, _ := s.Get(ctx, "k")
	v[0] = 'Y'
	want(t, s, "k", "abc")
	kvs, _ := s.List(ctx, "k")
	kvs[0].Value[0] = 'Z'
	want(t, s, "k", "abc")
}

func testDelete(t *testing.T, s store.Store) {
	put(t, s, "domains/a", "1")
	if err := store.Delete(ctx, s, "domains/a"); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, s, "domains/a")
	if err := store.Delete(ctx, s, "domains/a"); err != nil {
		t.Fatalf("deleting a missing key: %v", err)
	}
}

func testList(t *testing.T, s store.Store) {
	for _, k := range []string{"domains/b", "meta/x", "domains/a", "domainsX", "definitions/a", "domains/c/1"} {
		put(t, s, k, "v-"+k)
	}
	kvs, err := s.List(ctx, "domains/")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range kvs {
		keys = append(keys, kv.Key)
		if string(kv.Value) != "v-"+kv.Key {
			t.Errorf("List: %s = %q", kv.Key, kv.Value)
		}
	}
	if fmt.Sprint(keys) != "[domains/a domains/b domains/c/1]" {
		t.Fatalf("List domains/ = %v, want them in key order and nothing else", keys)
	}
	all, err := s.List(ctx, "")
	if err != nil || len(all) != 6 {
		t.Fatalf("List of every key: %d, %v", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		if all[i-1].Key >= all[i].Key {
			t.Fatalf("List is not in key order: %s before %s", all[i-1].Key, all[i].Key)
		}
	}
}

func testTxOwnWrites(t *testing.T, s store.Store) {
	put(t, s, "domains/a", "1")
	err := s.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put("domains/b", []byte("2")); err != nil {
			return err
		}
		if err := tx.Delete("domains/a"); err != nil {
			return err
		}
		if v, err := tx.Get("domains/b"); err != nil || string(v) != "2" {
			return fmt.Errorf("Tx.Get of its own put = %q, %v", v, err)
		}
		if _, err := tx.Get("domains/a"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("Tx.Get of its own delete: %v", err)
		}
		kvs, err := tx.List("domains/")
		if err != nil || len(kvs) != 1 || kvs[0].Key != "domains/b" {
			return fmt.Errorf("Tx.List after its own writes: %+v, %v", kvs, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantMissing(t, s, "domains/a")
	want(t, s, "domains/b", "2")
}

func testAtomic(t *testing.T, s store.Store) {
	put(t, s, "domains/a", "1")
	put(t, s, "meta/next", "7")
	boom := errors.New("boom")
	err := s.Update(ctx, func(tx store.Tx) error {
		tx.Put("domains/c", []byte("3"))
		tx.Put("meta/next", []byte("8"))
		tx.Delete("domains/a")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	want(t, s, "domains/a", "1")
	want(t, s, "meta/next", "7")
	wantMissing(t, s, "domains/c")
	if kvs, _ := s.List(ctx, ""); len(kvs) != 2 {
		t.Fatalf("a failed Update left %d keys, want 2", len(kvs))
	}
}

func testSerializable(t *testing.T, s store.Store) {
	const n = 20
	put(t, s, "counter", "0")
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Update(ctx, func(tx store.Tx) error {
				v, err := tx.Get("counter")
				if err != nil {
					return err
				}
				c, _ := strconv.Atoi(string(v))
				return tx.Put("counter", []byte(strconv.Itoa(c+1)))
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	want(t, s, "counter", strconv.Itoa(n))
}

func testDurable(t *testing.T, s store.Store, reopen func(t *testing.T) store.Store) {
	put(t, s, "domains/a", "1")
	put(t, s, "meta/x", "3")
	store.Delete(ctx, s, "domains/a")
	s.Update(ctx, func(tx store.Tx) error { tx.Put("domains/z", nil); return errors.New("abandoned") })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = reopen(t)
	defer s.Close()
	want(t, s, "meta/x", "3")
	wantMissing(t, s, "domains/a")
	wantMissing(t, s, "domains/z")
}
