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
	"time"

	"github.com/ringfence/ringfence/internal/store"
)

var _ store.Store = (*Mem)(nil)

// ErrClosed is returned by a store that was closed.
var ErrClosed = errors.New("memstore: closed")

// Mem is an in-memory store. Writers take turns (one Update at a time);
// readers see the last committed state, never half of an Update.
type Mem struct {
	wmu sync.Mutex // one Update at a time

	mu     sync.RWMutex // guards data, revs, leases, closed and failUpdate
	data   map[string][]byte
	revs   map[string]int64
	leases map[string]store.LeaseID
	local  *store.Local
	closed bool
	// failUpdate, when set, is asked before every Update commits.
	failUpdate func(writes map[string][]byte) error
}

// New returns an empty store.
func New() *Mem {
	m := &Mem{data: map[string][]byte{}, revs: map[string]int64{}, leases: map[string]store.LeaseID{}}
	m.local = store.NewLocal(0, m.dropLease)
	return m
}

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

func (m *Mem) Watch(ctx context.Context, prefix string, after int64) (<-chan store.Event, error) {
	return m.local.Watch(ctx, prefix, after)
}

func (m *Mem) Grant(_ context.Context, ttl time.Duration) (store.LeaseID, error) {
	return m.local.Grant(ttl)
}

func (m *Mem) KeepAlive(_ context.Context, id store.LeaseID) error { return m.local.KeepAlive(id) }

func (m *Mem) Revoke(_ context.Context, id store.LeaseID) error {
	if err := m.local.Revoke(id); err != nil {
		return err
	}
	m.dropLease(id)
	return nil
}

// dropLease deletes the keys bound to a lease that ended.
func (m *Mem) dropLease(id store.LeaseID) {
	m.Update(context.Background(), func(tx store.Tx) error {
		t := tx.(*memTx)
		for k, l := range t.leases {
			if l == id {
				t.Delete(k)
			}
		}
		return nil
	})
}

func (m *Mem) List(_ context.Context, prefix string) ([]store.KV, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	return list(m.data, m.revs, nil, prefix), nil
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
	tx := &memTx{base: m.data, revs: m.revs, leases: m.leases, local: m.local,
		writes: map[string][]byte{}, leased: map[string]store.LeaseID{}}
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
	rev := m.local.Rev() + 1
	var changes []store.Event
	for k, v := range tx.writes {
		_, had := m.data[k]
		delete(m.leases, k)
		switch {
		case v == nil && had:
			delete(m.data, k)
			delete(m.revs, k)
			changes = append(changes, store.Event{Type: store.EventDelete, Key: k, Rev: rev})
		case v != nil:
			m.data[k], m.revs[k] = v, rev
			if l := tx.leased[k]; l != 0 {
				m.leases[k] = l
			}
			changes = append(changes, store.Event{Type: store.EventPut, Key: k, Value: bytes.Clone(v), Rev: rev})
		}
	}
	if len(changes) > 0 {
		sort.Slice(changes, func(i, j int) bool { return changes[i].Key < changes[j].Key })
		m.local.Committed(rev, changes)
	}
	return nil
}

func (m *Mem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.local.Close()
	return nil
}

// memTx is an Update's view: the committed data with its own writes over
// it (a nil value is a delete).
type memTx struct {
	base, writes map[string][]byte
	revs         map[string]int64
	leases       map[string]store.LeaseID // committed keys' leases
	leased       map[string]store.LeaseID // this tx's leased puts
	local        *store.Local
}

func (t *memTx) Get(key string) ([]byte, error) { return get(t.base, t.writes, key) }

// Rev of a key this tx wrote is the revision it will commit at.
func (t *memTx) Rev(key string) (int64, error) {
	if _, err := get(t.base, t.writes, key); err != nil {
		return 0, nil
	}
	if _, ok := t.writes[key]; ok {
		return t.local.Rev() + 1, nil
	}
	return t.revs[key], nil
}

func (t *memTx) Put(key string, value []byte) error {
	t.writes[key] = append([]byte{}, value...) // never nil: nil is a delete
	delete(t.leased, key)
	return nil
}

func (t *memTx) PutLeased(key string, value []byte, lease store.LeaseID) error {
	if err := t.local.Alive(lease); err != nil {
		return err
	}
	t.Put(key, value)
	t.leased[key] = lease
	return nil
}

func (t *memTx) Delete(key string) error {
	t.writes[key] = nil
	return nil
}

func (t *memTx) List(prefix string) ([]store.KV, error) {
	kvs := list(t.base, t.revs, t.writes, prefix)
	for i := range kvs {
		kvs[i].Rev, _ = t.Rev(kvs[i].Key)
	}
	return kvs, nil
}

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
func list(base map[string][]byte, revs map[string]int64, over map[string][]byte, prefix string) []store.KV {
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
			out = append(out, store.KV{Key: k, Value: v, Rev: revs[k]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}
