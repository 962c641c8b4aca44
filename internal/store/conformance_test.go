package store_test

import (
	"path/filepath"
	"testing"

	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/store/storetest"
)

// TestBolt runs the store suite against bbolt (durable: reopened from
// its file).
func TestBolt(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func(*testing.T) store.Store) {
		path := filepath.Join(t.TempDir(), "state.db")
		open := func(t *testing.T) store.Store {
			s, err := store.OpenBolt(path)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		return open(t), open
	})
}
