package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

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

// TestBoltLeasesEndWithTheProcess: a leased key does not survive a
// reopen (its lease was this process's), a plain one does.
func TestBoltLeasesEndWithTheProcess(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := s.Grant(ctx, time.Hour)
	s.Update(ctx, func(tx Tx) error {
		tx.Put("plain", []byte("1"))
		return tx.PutLeased("leased", []byte("1"), id)
	})
	s.Close()
	s, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get(ctx, "leased"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a leased key after reopen: %v", err)
	}
	if _, err := s.Get(ctx, "plain"); err != nil {
		t.Fatalf("a plain key after reopen: %v", err)
	}
}
