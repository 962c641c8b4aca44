package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucket = []byte("ringfence")
	// revsBucket keeps each key's last revision, leaseBucket the lease a
	// key is bound to, metaBucket the store's revision counter. A store
	// written before revisions existed has none: its keys read as rev 1.
	revsBucket  = []byte("ringfence.revs")
	leaseBucket = []byte("ringfence.leases")
	metaBucket  = []byte("ringfence.meta")
	revKey      = []byte("rev")
)

// Bolt is the embedded store: one bbolt file, fsynced on every commit, so
// a crash leaves either the old or the new state, never half of one.
type Bolt struct {
	db    *bolt.DB
	wmu   sync.Mutex // commits and their events in revision order
	local *Local
}

// OpenBolt opens (creating) the store file. A second daemon on the same
// state dir fails here instead of corrupting it. Keys bound to a lease of
// an earlier process are deleted: a lease never outlives its process.
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening state store %s: %w (is another ringfence daemon using this state dir?)", path, err)
	}
	var rev int64
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucket, revsBucket, leaseBucket, metaBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		var err error
		rev, err = dropLeased(tx)
		return err
	}); err != nil {
		db.Close()
		return nil, err
	}
	b := &Bolt{db: db}
	b.local = NewLocal(rev, b.dropLease)
	return b, nil
}

// dropLeased deletes every key bound to a lease (at open, all leases are
// gone) and returns the store's revision.
func dropLeased(tx *bolt.Tx) (int64, error) {
	rev := revOf(tx.Bucket(metaBucket).Get(revKey))
	lb := tx.Bucket(leaseBucket)
	var keys [][]byte
	lb.ForEach(func(k, _ []byte) error { keys = append(keys, bytes.Clone(k)); return nil })
	if len(keys) == 0 {
		return rev, nil
	}
	rev++
	for _, k := range keys {
		for _, b := range [][]byte{bucket, revsBucket, leaseBucket} {
			if err := tx.Bucket(b).Delete(k); err != nil {
				return 0, err
			}
		}
	}
	return rev, tx.Bucket(metaBucket).Put(revKey, revBytes(rev))
}

func revOf(b []byte) int64 {
	if len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

func revBytes(rev int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(rev)) }

// OpenBoltReadOnly opens a store file to read it (a check); it takes a
// shared lock, so it fails while a daemon has the store.
func OpenBoltReadOnly(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening %s to read: %w", path, err)
	}
	return &Bolt{db: db, local: NewLocal(0, func(LeaseID) {})}, nil
}

func (b *Bolt) Get(_ context.Context, key string) ([]byte, error) {
	var out []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = (&boltTx{tx: tx}).Get(key)
		return err
	})
	return out, err
}

func (b *Bolt) List(_ context.Context, prefix string) ([]KV, error) {
	var out []KV
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = (&boltTx{tx: tx}).List(prefix)
		return err
	})
	return out, err
}

// Update commits fn's writes at the next revision, then tells watches.
func (b *Bolt) Update(_ context.Context, fn func(Tx) error) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	t := &boltTx{local: b.local, rev: b.local.Rev() + 1}
	err := b.db.Update(func(tx *bolt.Tx) error {
		t.tx = tx
		if err := fn(t); err != nil {
			return err
		}
		if len(t.changes) == 0 {
			return nil
		}
		return tx.Bucket(metaBucket).Put(revKey, revBytes(t.rev))
	})
	if err == nil && len(t.changes) > 0 {
		b.local.Committed(t.rev, t.changes)
	}
	return err
}

func (b *Bolt) Watch(ctx context.Context, prefix string, after int64) (<-chan Event, error) {
	return b.local.Watch(ctx, prefix, after)
}

func (b *Bolt) Grant(_ context.Context, ttl time.Duration) (LeaseID, error) {
	return b.local.Grant(ttl)
}

func (b *Bolt) KeepAlive(_ context.Context, id LeaseID) error { return b.local.KeepAlive(id) }

func (b *Bolt) Revoke(ctx context.Context, id LeaseID) error {
	if err := b.local.Revoke(id); err != nil {
		return err
	}
	b.dropLease(id)
	return nil
}

// dropLease deletes the keys bound to a lease that ended.
func (b *Bolt) dropLease(id LeaseID) {
	b.Update(context.Background(), func(tx Tx) error {
		t := tx.(*boltTx)
		var keys []string // bbolt: no deletes inside ForEach
		t.tx.Bucket(leaseBucket).ForEach(func(k, v []byte) error {
			if LeaseID(revOf(v)) == id {
				keys = append(keys, string(k))
			}
			return nil
		})
		for _, k := range keys {
			if err := t.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *Bolt) Close() error {
	b.local.Close()
	return b.db.Close()
}

// boltTx is a bbolt transaction; a read-only one has no local (no writes).
type boltTx struct {
	tx      *bolt.Tx
	local   *Local
	rev     int64
	changes []Event
}

func (t *boltTx) Get(key string) ([]byte, error) {
	v := t.tx.Bucket(bucket).Get([]byte(key))
	if v == nil {
		return nil, ErrNotFound
	}
	return bytes.Clone(v), nil
}

func (t *boltTx) Rev(key string) (int64, error) {
	if t.tx.Bucket(bucket).Get([]byte(key)) == nil {
		return 0, nil
	}
	return max(1, t.revOf([]byte(key))), nil
}

func (t *boltTx) revOf(key []byte) int64 {
	if rb := t.tx.Bucket(revsBucket); rb != nil {
		return revOf(rb.Get(key))
	}
	return 0
}

func (t *boltTx) Put(key string, value []byte) error { return t.put(key, value, 0) }

func (t *boltTx) PutLeased(key string, value []byte, lease LeaseID) error {
	if err := t.local.Alive(lease); err != nil {
		return err
	}
	return t.put(key, value, lease)
}

func (t *boltTx) put(key string, value []byte, lease LeaseID) error {
	k := []byte(key)
	if err := t.tx.Bucket(bucket).Put(k, value); err != nil {
		return err
	}
	if err := t.tx.Bucket(revsBucket).Put(k, revBytes(t.rev)); err != nil {
		return err
	}
	lb := t.tx.Bucket(leaseBucket)
	var err error
	if lease != 0 {
		err = lb.Put(k, revBytes(int64(lease)))
	} else {
		err = lb.Delete(k)
	}
	t.changes = append(t.changes, Event{Type: EventPut, Key: key, Value: bytes.Clone(value), Rev: t.rev})
	return err
}

func (t *boltTx) Delete(key string) error {
	k := []byte(key)
	if t.tx.Bucket(bucket).Get(k) == nil {
		return nil
	}
	for _, b := range [][]byte{bucket, revsBucket, leaseBucket} {
		if err := t.tx.Bucket(b).Delete(k); err != nil {
			return err
		}
	}
	t.changes = append(t.changes, Event{Type: EventDelete, Key: key, Rev: t.rev})
	return nil
}

func (t *boltTx) List(prefix string) ([]KV, error) {
	var out []KV
	c := t.tx.Bucket(bucket).Cursor()
	p := []byte(prefix)
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		out = append(out, KV{Key: string(k), Value: bytes.Clone(v), Rev: max(1, t.revOf(k))})
	}
	return out, nil
}
