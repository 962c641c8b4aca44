package memstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/store/memstore"
	"github.com/ringfence/ringfence/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func(*testing.T) store.Store) {
		return memstore.New(), nil
	})
}

func TestFailUpdates(t *testing.T) {
	ctx := context.Background()
	m := memstore.New()
	store.Put(ctx, m, "a", []byte("1"))
	full := errors.New("disk full")
	m.FailUpdates(func(w map[string][]byte) error {
		if _, ok := w["b"]; ok {
			return full
		}
		return nil
	})
	if err := store.Put(ctx, m, "b", []byte("2")); !errors.Is(err, full) {
		t.Fatalf("FailUpdates: %v", err)
	}
	if err := store.Delete(ctx, m, "a"); err != nil {
		t.Fatal(err)
	}
	if keys := m.Keys(""); len(keys) != 0 {
		t.Fatalf("keys %v", keys)
	}
	m.Close()
	if _, err := m.Get(ctx, "a"); !errors.Is(err, memstore.ErrClosed) {
		t.Fatalf("a closed store answered: %v", err)
	}
}
