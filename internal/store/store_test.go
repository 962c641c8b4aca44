package store

import (
	"path/filepath"
	"testing"
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
