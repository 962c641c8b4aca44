package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// conformance runs against any Store; the etcd implementation will run it too.
func conformance(t *testing.T, open func() Store) {
	ctx := context.Background()
	s := open()
	if _, err := s.Get(ctx, "domains/a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if err := Put(ctx, s, "domains/a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	Put(ctx, s, "domains/b", []byte("2"))
	Put(ctx, s, "meta/x", []byte("3"))
	kvs, err := s.List(ctx, "domains/")
	if err != nil || len(kvs) != 2 || kvs[0].Key != "domains/a" || string(kvs[1].Value) != "2" {
		t.Fatalf("list: %+v %v", kvs, err)
	}
	// A failing transaction writes nothing.
	boom := errors.New("boom")
	err = s.Update(ctx, func(tx Tx) error {
		tx.Put("domains/c", []byte("4"))
		tx.Delete("domains/a")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, "domains/a"); err != nil || string(v) != "1" {
		t.Fatalf("rolled-back delete applied: %q %v", v, err)
	}
	if _, err := s.Get(ctx, "domains/c"); !errors.Is(err, ErrNotFound) {
		t.Fatal("rolled-back put applied")
	}
	Delete(ctx, s, "domains/a")
	if _, err := s.Get(ctx, "domains/a"); !errors.Is(err, ErrNotFound) {
		t.Fatal("delete failed")
	}
	s.Close()
	// Durable across reopen.
	s = open()
	defer s.Close()
	if v, err := s.Get(ctx, "meta/x"); err != nil || string(v) != "3" {
		t.Fatalf("after reopen: %q %v", v, err)
	}
}

func TestBolt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	conformance(t, func() Store {
		s, err := OpenBolt(path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestBoltSingleOwner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := OpenBolt(path); err == nil {
		t.Fatal("a second daemon could open the same store")
	}
}
