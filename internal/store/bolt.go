package store

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucket = []byte("ringfence")

// Bolt is the embedded store: one bbolt file, fsynced on every commit, so
// a crash leaves either the old or the new state, never half of one.
type Bolt struct{ db *bolt.DB }

// OpenBolt opens (creating) the store file. A second daemon on the same
// state dir fails here instead of corrupting it.
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening state store %s: %w (is another ringfence daemon using this state dir?)", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		db.Close()
		return nil, err
	}
	return &Bolt{db: db}, nil
}

// OpenBoltReadOnly opens a store file to read it (a check); it takes a
// shared lock, so it fails while a daemon has the store.
func OpenBoltReadOnly(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening %s to read: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

func (b *Bolt) Get(_ context.Context, key string) ([]byte, error) {
	var out []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = boltTx{tx}.Get(key)
		return err
	})
	return out, err
}

func (b *Bolt) List(_ context.Context, prefix string) ([]KV, error) {
	var out []KV
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = boltTx{tx}.List(prefix)
		return err
	})
	return out, err
}

func (b *Bolt) Update(_ context.Context, fn func(Tx) error) error {
	return b.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b *Bolt) Close() error { return b.db.Close() }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) Get(key string) ([]byte, error) {
	v := t.tx.Bucket(bucket).Get([]byte(key))
	if v == nil {
		return nil, ErrNotFound
	}
	return bytes.Clone(v), nil
}

func (t boltTx) Put(key string, value []byte) error {
	return t.tx.Bucket(bucket).Put([]byte(key), value)
}

func (t boltTx) Delete(key string) error { return t.tx.Bucket(bucket).Delete([]byte(key)) }

func (t boltTx) List(prefix string) ([]KV, error) {
	var out []KV
	c := t.tx.Bucket(bucket).Cursor()
	p := []byte(prefix)
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		out = append(out, KV{Key: string(k), Value: bytes.Clone(v)})
	}
	return out, nil
}
