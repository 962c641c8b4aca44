// Package etcdstore is store.Store on etcd: the state a cluster's hosts
// share. Every key lives under one prefix, so the cluster can share an
// etcd with others. Update is optimistic: fn reads at one revision, and
// its writes commit only if nothing it read (keys, and the keys under the
// prefixes it listed) changed since; otherwise fn runs again.
package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringfence/ringfence/internal/store"
)

// Prefix is where Ringfence keeps its keys in etcd.
const Prefix = "/ringfence/"

// MaxTxnOps is what an Update may need at most in one etcd transaction
// (a compare per key read, an op per key written). etcd's default is 128;
// the members Ringfence runs allow this many.
const MaxTxnOps = 4096

// retries is how often Update runs fn again after a conflict.
const retries = 64

var _ store.Store = (*Etcd)(nil)

// Etcd is a store on an etcd client. Close closes the client.
type Etcd struct {
	cli    *clientv3.Client
	prefix string
}

// New is a store on cli, its keys under prefix.
func New(cli *clientv3.Client, prefix string) *Etcd { return &Etcd{cli: cli, prefix: prefix} }

// Client is the etcd client (the cluster's membership calls use it).
func (s *Etcd) Client() *clientv3.Client { return s.cli }

func (s *Etcd) Get(ctx context.Context, key string) ([]byte, error) {
	resp, err := s.cli.Get(ctx, s.prefix+key)
	if err != nil {
		return nil, fmt.Errorf("reading %s from etcd: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, store.ErrNotFound
	}
	return resp.Kvs[0].Value, nil
}

func (s *Etcd) List(ctx context.Context, prefix string) ([]store.KV, error) {
	resp, err := s.cli.Get(ctx, s.prefix+prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("listing %s from etcd: %w", prefix, err)
	}
	return s.kvs(resp), nil
}

func (s *Etcd) kvs(resp *clientv3.GetResponse) []store.KV {
	out := make([]store.KV, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, store.KV{Key: strings.TrimPrefix(string(kv.Key), s.prefix), Value: kv.Value, Rev: kv.ModRevision})
	}
	return out
}

// Update runs fn until its writes commit without a conflict.
func (s *Etcd) Update(ctx context.Context, fn func(store.Tx) error) error {
	for range retries {
		t := &tx{s: s, ctx: ctx, reads: map[string]int64{}, writes: map[string]write{}}
		if err := fn(t); err != nil {
			return err
		}
		if len(t.writes) == 0 {
			return nil
		}
		ok, err := t.commit()
		if err != nil || ok {
			return err
		}
	}
	return fmt.Errorf("etcd: the transaction met a conflict %d times in a row: try again", retries)
}

func (s *Etcd) Watch(ctx context.Context, prefix string, after int64) (<-chan store.Event, error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if after > 0 {
		opts = append(opts, clientv3.WithRev(after+1))
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.cli.Watch(wctx, s.prefix+prefix, opts...)
	out := make(chan store.Event)
	go func() {
		defer close(out)
		defer cancel()
		for resp := range wch {
			for _, e := range s.events(prefix, after, resp) {
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
				if e.Err != nil {
					return
				}
			}
		}
		if ctx.Err() == nil {
			out <- store.Event{Err: fmt.Errorf("the etcd watch on %s ended", prefix)}
		}
	}()
	return out, nil
}

// events turns one watch response into store events (or its error).
func (s *Etcd) events(prefix string, after int64, resp clientv3.WatchResponse) []store.Event {
	if resp.CompactRevision != 0 {
		return []store.Event{{Err: fmt.Errorf("watching %q after revision %d: %w", prefix, after, store.ErrCompacted)}}
	}
	if err := resp.Err(); err != nil {
		return []store.Event{{Err: fmt.Errorf("watching %q: %w", prefix, err)}}
	}
	var out []store.Event
	for _, ev := range resp.Events {
		e := store.Event{Type: store.EventPut, Key: strings.TrimPrefix(string(ev.Kv.Key), s.prefix), Value: ev.Kv.Value, Rev: ev.Kv.ModRevision}
		if ev.Type == clientv3.EventTypeDelete {
			e.Type, e.Value = store.EventDelete, nil
		}
		out = append(out, e)
	}
	return out
}

func (s *Etcd) Grant(ctx context.Context, ttl time.Duration) (store.LeaseID, error) {
	if ttl < time.Second {
		return 0, fmt.Errorf("a lease of %s: it must last at least 1s", ttl)
	}
	resp, err := s.cli.Grant(ctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return 0, fmt.Errorf("granting an etcd lease: %w", err)
	}
	return store.LeaseID(resp.ID), nil
}

func (s *Etcd) KeepAlive(ctx context.Context, id store.LeaseID) error {
	_, err := s.cli.KeepAliveOnce(ctx, clientv3.LeaseID(id))
	return leaseErr(err)
}

func (s *Etcd) Revoke(ctx context.Context, id store.LeaseID) error {
	_, err := s.cli.Revoke(ctx, clientv3.LeaseID(id))
	return leaseErr(err)
}

func leaseErr(err error) error {
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return store.ErrNoLease
	}
	return err
}

func (s *Etcd) Close() error { return s.cli.Close() }

// write is one buffered write of a tx: a put (with its lease) or a delete.
type write struct {
	value []byte // nil: delete
	lease store.LeaseID
}

// tx reads at one revision (snap, fixed by its first read) and buffers
// its writes; reads records what commit must find unchanged.
type tx struct {
	s      *Etcd
	ctx    context.Context
	snap   int64
	reads  map[string]int64 // key -> mod revision seen (0: missing)
	lists  []string         // prefixes listed
	writes map[string]write
}

func (t *tx) get(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if t.snap != 0 {
		opts = append(opts, clientv3.WithRev(t.snap))
	}
	resp, err := t.s.cli.Get(t.ctx, t.s.prefix+key, opts...)
	if err != nil {
		return nil, fmt.Errorf("reading %s from etcd: %w", key, err)
	}
	if t.snap == 0 {
		t.snap = resp.Header.Revision
	}
	return resp, nil
}

func (t *tx) Get(key string) ([]byte, error) {
	if w, ok := t.writes[key]; ok {
		if w.value == nil {
			return nil, store.ErrNotFound
		}
		return append([]byte{}, w.value...), nil
	}
	resp, err := t.get(key)
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		t.reads[key] = 0
		return nil, store.ErrNotFound
	}
	t.reads[key] = resp.Kvs[0].ModRevision
	return resp.Kvs[0].Value, nil
}

// Rev of a key this tx wrote is unknown before commit: snap+1 stands in.
func (t *tx) Rev(key string) (int64, error) {
	if w, ok := t.writes[key]; ok {
		if w.value == nil {
			return 0, nil
		}
		return t.snap + 1, nil
	}
	if _, err := t.Get(key); err != nil && !errors.Is(err, store.ErrNotFound) {
		return 0, err
	}
	return t.reads[key], nil
}

func (t *tx) Put(key string, value []byte) error { return t.PutLeased(key, value, 0) }

func (t *tx) PutLeased(key string, value []byte, lease store.LeaseID) error {
	t.writes[key] = write{value: append([]byte{}, value...), lease: lease}
	return nil
}

func (t *tx) Delete(key string) error {
	t.writes[key] = write{}
	return nil
}

func (t *tx) List(prefix string) ([]store.KV, error) {
	resp, err := t.get(prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	t.lists = append(t.lists, prefix)
	byKey := map[string]store.KV{}
	for _, kv := range t.s.kvs(resp) {
		t.reads[kv.Key] = kv.Rev
		byKey[kv.Key] = kv
	}
	for k, w := range t.writes {
		switch {
		case !strings.HasPrefix(k, prefix):
		case w.value == nil:
			delete(byKey, k)
		default:
			byKey[k] = store.KV{Key: k, Value: append([]byte{}, w.value...), Rev: t.snap + 1}
		}
	}
	out := make([]store.KV, 0, len(byKey))
	for _, kv := range byKey {
		out = append(out, kv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// commit writes if nothing read changed: every key read is still at the
// revision seen (0: still missing), and no key under a listed prefix was
// written after snap (a key added there would change what List said).
func (t *tx) commit() (bool, error) {
	p := t.s.prefix
	var cmps []clientv3.Cmp
	for k, rev := range t.reads {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p+k), "=", rev))
	}
	for _, prefix := range t.lists {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p+prefix), "<", t.snap+1).WithPrefix())
	}
	var ops []clientv3.Op
	for k, w := range t.writes {
		switch {
		case w.value == nil:
			ops = append(ops, clientv3.OpDelete(p+k))
		case w.lease != 0:
			ops = append(ops, clientv3.OpPut(p+k, string(w.value), clientv3.WithLease(clientv3.LeaseID(w.lease))))
		default:
			ops = append(ops, clientv3.OpPut(p+k, string(w.value)))
		}
	}
	resp, err := t.s.cli.Txn(t.ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return false, fmt.Errorf("writing to etcd: %w", store.ErrNoLease)
		}
		return false, fmt.Errorf("writing to etcd: %w", err)
	}
	return resp.Succeeded, nil
}
