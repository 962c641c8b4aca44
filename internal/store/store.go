// Package store keeps the daemon's state. Store is deliberately small so
// an etcd implementation can satisfy it when hosts form a cluster; Bolt is
// the embedded single-host implementation.
package store

import (
	"context"
	"errors"
)

// ErrNotFound is returned for a missing key.
var ErrNotFound = errors.New("store: key not found")

// KV is one key and its value.
type KV struct {
	Key   string
	Value []byte
}

// Tx is a read-write transaction: all its writes land together or not at all.
type Tx interface {
	Get(key string) ([]byte, error)
	Put(key string, value []byte) error
	Delete(key string) error
	List(prefix string) ([]KV, error)
}

// Store is the daemon's state store.
type Store interface {
	Get(ctx context.Context, key string) ([]byte, error)
	List(ctx context.Context, prefix string) ([]KV, error)
	// Update runs fn in one atomic transaction; if fn returns an error
	// nothing is written.
	Update(ctx context.Context, fn func(Tx) error) error
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
