// Package memstore is a store.Store in memory: for unit tests of what
// keeps its state in the store (the domain manager), with no file. It
// keeps the same contract as the bbolt store (store/storetest runs
// against both) except durability, and it can be made to fail.
package memstore

import (
	"bytes"
	"context"
	"errors"
	"sort"
	"strings"
	"sync"

	"github.com/ringfence/ringfence/internal/store"
)

var _ store.Store = (*Mem)(nil)

// ErrClosed is returned by a store that was closed.
var ErrClosed = errors.New("memstore: closed")

// Mem is an in-memory store. Writers take turns (one Update at a time);
// readers see the last committed state, never half of an Update.
type Mem struct {
	wmu sync.Mutex // one Update at a time

	mu     sync.RWMutex // guards data, closed and failUpdate
	data   map[string][]byte
	closed bool
	// failUpdate, when set, is asked before every Update commits.
	failUpdate func(writes map[string][]byte) error
}

// New returns an empty store.
func New() *Mem { return &Mem{data: map[string][]byte{}} }

// FailUpdates makes every following Update ask fn before it commits,
// with the keys it would write (a nil value: deleted): a non-nil error
// fails the Update, nothing written (a full disk, say). nil: commit again.
func (m *Mem) FailUpdates(fn func(writes map[string][]byte) error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failUpdate = fn
}

// Keys are the keys with prefix, in order (for tests' assertions).
func (m *Mem) Keys(prefix string) []string {
	kvs, _ := m.List(context.Background(), prefix)
	out := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}

func (m *Mem) Get(_ context.Context, key string) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	return get(m.data, nil, key)
}

func (m *Mem) List(_ context.Context, prefix string) ([]store.KV, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	return list(m.data, nil, prefix), nil
}

// Update runs fn on a transaction whose writes are kept aside and
// applied together once fn has succeeded.
func (m *Mem) Update(_ context.Context, fn func(store.Tx) error) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	m.mu.RLock()
	closed, fail := m.closed, m.failUpdate
	m.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	// Nobody else writes while wmu is held: data can be read unlocked
	// against concurrent readers, who only read too.
	tx := &memTx{base: m.data, writes: map[string][]byte{}}
	if err := fn(tx); err != nil {
		return err
	}
	if fail != nil {
		if err := fail(tx.writes); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, v := range tx.writes {
		if v == nil {
			delete(m.data, k)
		} else {
			m.data[k] = v
		}
	}
	return nil
}

func (m *Mem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// memTx is an Update's view: the committed data with its own writes over
// it (a nil value is a delete).
type memTx struct {
	base, writes map[string][]byte
}

func (t *memTx) Get(key string) ([]byte, error) { return get(t.base, t.writes, key) }

func (t *memTx) Put(key string, value []byte) error {
	t.writes[key] = append([]byte{}, value...) // never nil: nil is a delete
	return nil
}

func (t *memTx) Delete(key string) error {
	t.writes[key] = nil
	return nil
}

func (t *memTx) List(prefix string) ([]store.KV, error) { return list(t.base, t.writes, prefix), nil }

// get reads key from base with over on top.
func get(base, over map[string][]byte, key string) ([]byte, error) {
	v, ok := over[key]
	if !ok {
		v, ok = base[key]
	}
	if !ok || v == nil {
		return nil, store.ErrNotFound
	}
	return bytes.Clone(v), nil
}

// list lists prefix from base with over on top, by key.
func list(base, over map[string][]byte, prefix string) []store.KV {
	keys := map[string]bool{}
	for _, m := range []map[string][]byte{base, over} {
		for k := range m {
			if strings.HasPrefix(k, prefix) {
				keys[k] = true
			}
		}
	}
	var out []store.KV
	for k := range keys {
		if v, err := get(base, over, k); err == nil {
			out = append(out, store.KV{Key: k, Value: v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}
