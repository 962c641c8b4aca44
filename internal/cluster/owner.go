package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/store/etcdstore"
)

// ownerPrefix: cluster/owner/DOMAIN is the host running an HA domain,
// bound to that host's lease: it vanishes when the host stops renewing
// (its fence deadline has passed by then), and it changes hands only by
// a transaction that compares it (Takeover).
const ownerPrefix = "cluster/owner/"

// ErrTaken is a takeover or claim that lost: the owner key is not what
// the caller saw.
var ErrTaken = errors.New("the domain's owner changed")

// ClaimOwner makes this host the owner of an HA domain it runs: a new
// key if none, or its own key moved onto its current lease (a daemon
// that lost its lease). It returns the owner after the call: another
// host's name means the domain is that host's now.
func (c *Cluster) ClaimOwner(ctx context.Context, name string) (string, error) {
	cs, err := c.conn()
	if err != nil {
		return "", err
	}
	lease := c.Lease()
	if lease == 0 {
		return "", api.Errorf(api.ErrUnavailable, "this host has no cluster lease yet")
	}
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	resp, err := cs.s.Client().Get(cctx, etcdstore.Prefix+ownerPrefix+name)
	if err != nil {
		return "", api.Errorf(api.ErrUnavailable, "reading the owner of %q: %v", name, err)
	}
	var rev int64
	if len(resp.Kvs) == 1 {
		kv := resp.Kvs[0]
		if owner := string(kv.Value); owner != cs.me {
			return owner, nil
		}
		if store.LeaseID(kv.Lease) == lease {
			return cs.me, nil
		}
		rev = kv.ModRevision
	}
	err = store.CompareAndSwap(cctx, cs.s, ownerPrefix+name, rev, []byte(cs.me), lease)
	if errors.Is(err, store.ErrConflict) {
		return c.ownerOf(ctx, cs, name)
	}
	return cs.me, err
}

func (c *Cluster) ownerOf(ctx context.Context, cs *clusterStore, name string) (string, error) {
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	b, err := cs.s.Get(cctx, ownerPrefix+name)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	return string(b), err
}

// ReleaseOwner deletes this host's owner key of a domain it stopped on
// purpose (a shutdown, a destroy, HA off): survivors see the key go
// while this host is alive, which is no failure.
func (c *Cluster) ReleaseOwner(ctx context.Context, name string) error {
	return c.whileOwner(ctx, name, func(store.Tx, *clusterStore) error { return nil })
}

// whileOwner runs fn and deletes the owner key in one transaction, if
// this host owns the domain (nothing otherwise).
func (c *Cluster) whileOwner(ctx context.Context, name string, fn func(store.Tx, *clusterStore) error) error {
	cs, err := c.conn()
	if err != nil {
		return err
	}
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	return cs.s.Update(cctx, func(tx store.Tx) error {
		if b, err := tx.Get(ownerPrefix + name); err != nil || string(b) != cs.me {
			return nil
		}
		if err := fn(tx, cs); err != nil {
			return err
		}
		return tx.Delete(ownerPrefix + name)
	})
}

// Owners are the HA domains' owners, and the revision they were read at.
func (c *Cluster) Owners(ctx context.Context) (map[string]string, int64, error) {
	cs, err := c.conn()
	if err != nil {
		return nil, 0, err
	}
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	resp, err := cs.s.Client().Get(cctx, etcdstore.Prefix+ownerPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, api.Errorf(api.ErrUnavailable, "reading the HA owners: %v", err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), etcdstore.Prefix+ownerPrefix)] = string(kv.Value)
	}
	return out, resp.Header.Revision, nil
}

// WatchOwners sends every change of the owner keys after revision after.
func (c *Cluster) WatchOwners(ctx context.Context, after int64) (<-chan store.Event, error) {
	cs, err := c.conn()
	if err != nil {
		return nil, err
	}
	return cs.s.Watch(ctx, ownerPrefix, after)
}

// OwnerKeyDomain is the domain an owner key (as a watch sends it) names.
func OwnerKeyDomain(key string) string { return strings.TrimPrefix(key, ownerPrefix) }

// Takeover makes this host the owner of an HA domain whose owner failed,
// in one transaction: the owner key must still be absent, its old owner
// (from) must have lost its lease (its alive key gone, or written anew
// after the delete at gone: it fenced and came back), and the domain's
// record must still be from's. The record is rewritten as this host's.
// It returns the definition to start. gone 0: the caller saw no delete
// (a scan), and from must be down.
func (c *Cluster) Takeover(ctx context.Context, name, from string, gone int64) (api.DomainSpec, error) {
	cs, err := c.conn()
	if err != nil {
		return api.DomainSpec{}, err
	}
	lease := c.Lease()
	if lease == 0 {
		return api.DomainSpec{}, api.Errorf(api.ErrUnavailable, "this host has no cluster lease")
	}
	var spec api.DomainSpec
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	err = cs.s.Update(cctx, func(tx store.Tx) error {
		if rev, err := tx.Rev(ownerPrefix + name); err != nil || rev != 0 {
			return fmt.Errorf("%s is owned again: %w", name, ErrTaken)
		}
		alive, err := tx.Rev(alivePrefix + from)
		if err != nil {
			return err
		}
		if alive != 0 && (gone == 0 || alive < gone) {
			return fmt.Errorf("%s's host %s still holds its lease (it released the domain: no failure): %w", name, from, ErrTaken)
		}
		b, err := tx.Get(domainsPrefix + name)
		if err != nil {
			return fmt.Errorf("%s has no record in the cluster: %w", name, ErrTaken)
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil || r.Host != from {
			return fmt.Errorf("%s's record is not %s's: %w", name, from, ErrTaken)
		}
		spec = r.Domain.Spec
		r.Host, r.Domain.Host = cs.me, cs.me
		nb, _ := json.Marshal(r)
		if err := tx.Put(domainsPrefix+name, nb); err != nil {
			return err
		}
		return tx.PutLeased(ownerPrefix+name, []byte(cs.me), lease)
	})
	return spec, err
}

// GiveBack undoes a takeover whose start failed: the record goes back
// to from and the owner key is deleted, so another survivor may try.
func (c *Cluster) GiveBack(ctx context.Context, name, from string) error {
	return c.whileOwner(ctx, name, func(tx store.Tx, cs *clusterStore) error {
		b, err := tx.Get(domainsPrefix + name)
		if err != nil {
			return nil
		}
		var r Record
		if json.Unmarshal(b, &r) != nil || r.Host != cs.me {
			return nil
		}
		r.Host, r.Domain.Host = from, from
		nb, _ := json.Marshal(r)
		return tx.Put(domainsPrefix+name, nb)
	})
}
