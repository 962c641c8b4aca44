// Package store keeps the daemon's state. Store is what etcd gives
// (revisions, transactions, watch, leases) and no more, so a cluster's
// hosts share one etcd (store/etcdstore) while a single host keeps the
// embedded bbolt file (Bolt); store/storetest holds both to one contract.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is returned for a missing key.
var ErrNotFound = errors.New("store: key not found")

// ErrConflict is returned by CompareAndSwap when the key is not at the
// revision the caller read: someone else wrote it meanwhile.
var ErrConflict = errors.New("store: the key changed since it was read")

// ErrCompacted is sent by a watch asked to start before the oldest
// revision the store still has: the watcher must List again.
var ErrCompacted = errors.New("store: the revision asked for is no longer kept (list again)")

// ErrNoLease is returned for a lease that expired, was revoked, or never was.
var ErrNoLease = errors.New("store: no such lease (expired or revoked)")

// KV is one key and its value, with the store revision of its last write.
type KV struct {
	Key   string
	Value []byte
	Rev   int64
}

// LeaseID names a lease; 0 is "no lease".
type LeaseID int64

// Tx is a read-write transaction: all its writes land together or not at
// all, and only if nothing it read changed meanwhile (serializable).
type Tx interface {
	Get(key string) ([]byte, error)
	// Rev is the revision of key's last write, 0 when it is missing.
	Rev(key string) (int64, error)
	Put(key string, value []byte) error
	// PutLeased writes a key that is deleted when lease ends.
	PutLeased(key string, value []byte, lease LeaseID) error
	Delete(key string) error
	List(prefix string) ([]KV, error)
}

// EventType says whether a watched key was written or deleted.
type EventType int

const (
	EventPut EventType = iota + 1
	EventDelete
)

// Event is one change seen by a watch, or the watch's end (Err set).
type Event struct {
	Type  EventType
	Key   string
	Value []byte
	Rev   int64
	Err   error
}

// Store is the daemon's state store.
type Store interface {
	Get(ctx context.Context, key string) ([]byte, error)
	List(ctx context.Context, prefix string) ([]KV, error)
	// Update runs fn in one atomic, serializable transaction; if fn
	// returns an error nothing is written. fn may run more than once (an
	// optimistic store retries it after a conflict), so it must not act
	// outside the transaction.
	Update(ctx context.Context, fn func(Tx) error) error
	// Watch sends every change under prefix after revision after (0: from
	// now), in revision order, until ctx ends. A watch that cannot go on
	// sends one Event with Err and closes.
	Watch(ctx context.Context, prefix string, after int64) (<-chan Event, error)
	// Grant makes a lease that ends ttl after its last renewal.
	Grant(ctx context.Context, ttl time.Duration) (LeaseID, error)
	// KeepAlive renews a lease once (ErrNoLease if it has ended).
	KeepAlive(ctx context.Context, id LeaseID) error
	// Revoke ends a lease now, deleting its keys.
	Revoke(ctx context.Context, id LeaseID) error
	Close() error
}

// Put writes one key atomically.
func Put(ctx context.Context, s Store, key string, value []byte) error {
	return s.Update(ctx, func(tx Tx) error { return tx.Put(key, value) })
}

// Delete removes one key atomically.
func Delete(ctx context.Context, s Store, key string) error {
	return s.Update(ctx, func(tx Tx) error { return tx.Delete(key) })
}

// CompareAndSwap writes key only if it is still at revision rev (0: only
// if it does not exist), bound to lease (0: none); ErrConflict otherwise.
// Ownership changes go through it: the old owner is compared, never
// overwritten blindly.
func CompareAndSwap(ctx context.Context, s Store, key string, rev int64, value []byte, lease LeaseID) error {
	return s.Update(ctx, func(tx Tx) error {
		cur, err := tx.Rev(key)
		if err != nil {
			return err
		}
		if cur != rev {
			return fmt.Errorf("%s is at revision %d, not %d: %w", key, cur, rev, ErrConflict)
		}
		if lease != 0 {
			return tx.PutLeased(key, value, lease)
		}
		return tx.Put(key, value)
	})
}
