package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/store/etcdstore"
)

// domainsPrefix: cluster/domains/NAME is a domain's owner and its
// definition as the owner last published it (runtime stays on the owner).
const domainsPrefix = "cluster/domains/"

// Record is one domain in the cluster: its owner host and how it looks
// there.
type Record struct {
	Host   string     `json:"host"`
	Domain api.Domain `json:"domain"`
}

func (c *Cluster) conn() (*clusterStore, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st == nil {
		return nil, errNotIn
	}
	if c.store == nil {
		return nil, api.Errorf(api.ErrUnavailable, "this host has not reached the cluster's etcd (%s): nothing done", c.ready)
	}
	return &clusterStore{c.store, c.st.Name}, nil
}

var errNotIn = api.Errorf(api.ErrInvalid, "this host is in no cluster")

// clusterStore is the etcd store and this host's name.
type clusterStore struct {
	s  *etcdstore.Etcd
	me string
}

// listed reads every key under prefix through this host's connection.
func (c *Cluster) listed(ctx context.Context, prefix string) (*clusterStore, []store.KV, error) {
	cs, err := c.conn()
	if err != nil {
		return nil, nil, err
	}
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	kvs, err := cs.s.List(cctx, prefix)
	if err != nil {
		return nil, nil, api.Errorf(api.ErrUnavailable, "reading %s from the cluster's etcd: %v", prefix, err)
	}
	return cs, kvs, nil
}

// Domains are every host's domains.
func (c *Cluster) Domains(ctx context.Context) ([]Record, error) {
	_, kvs, err := c.listed(ctx, domainsPrefix)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(kvs))
	for _, kv := range kvs {
		var r Record
		if json.Unmarshal(kv.Value, &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// Owner is the host that owns a domain ("" when the cluster has none of
// that name, or this host is in no cluster).
func (c *Cluster) Owner(ctx context.Context, name string) (string, error) {
	cs, err := c.conn()
	if errors.Is(err, errNotIn) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	b, err := cs.s.Get(cctx, domainsPrefix+name)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", api.Errorf(api.ErrUnavailable, "reading the owner of %q: %v", name, err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return "", err
	}
	return r.Host, nil
}

// Claim refuses a name another host's domain has: a new domain here
// must not take it (names are cluster-wide). It is checked again, by
// revision, when Publish first writes the record.
func (c *Cluster) Claim(ctx context.Context, name string) error {
	owner, err := c.otherOwner(ctx, name)
	if err != nil || owner == "" {
		return err
	}
	return api.Errorf(api.ErrConflict, "domain %q is on host %q of this cluster: names are cluster-wide; run the verb there (it is forwarded from any host), or choose another name; nothing changed", name, owner)
}

// Publish makes the cluster's records of this host's domains match ds:
// each written only if it changed, a new one only if no other host has
// the name (compared by revision, never overwritten), and the records of
// domains gone from here deleted. It returns the names another host has.
func (c *Cluster) Publish(ctx context.Context, ds []api.Domain) ([]string, error) {
	cs, kvs, err := c.listed(ctx, domainsPrefix)
	if err != nil {
		return nil, err
	}
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	have := map[string]store.KV{}
	for _, kv := range kvs {
		have[strings.TrimPrefix(kv.Key, domainsPrefix)] = kv
	}
	var clashes []string
	local := map[string]bool{}
	for _, d := range ds {
		d.Host = cs.me
		local[d.Spec.Name] = true
		clash, err := cs.publishOne(cctx, d, have[d.Spec.Name])
		if err != nil {
			return clashes, fmt.Errorf("publishing %q: %w", d.Spec.Name, err)
		}
		if clash {
			clashes = append(clashes, d.Spec.Name)
		}
	}
	for name, kv := range have {
		var r Record
		if !local[name] && json.Unmarshal(kv.Value, &r) == nil && r.Host == cs.me {
			// Gone from here: delete it unless it changed meanwhile.
			cs.s.Update(cctx, func(tx store.Tx) error {
				if rev, _ := tx.Rev(kv.Key); rev != kv.Rev {
					return nil
				}
				return tx.Delete(kv.Key)
			})
		}
	}
	return clashes, nil
}

// publishOne writes one record if it changed; it reports a clash when
// the name is another host's.
func (cs *clusterStore) publishOne(ctx context.Context, d api.Domain, cur store.KV) (bool, error) {
	rec, err := json.Marshal(Record{Host: cs.me, Domain: d})
	if err != nil {
		return false, err
	}
	if cur.Key != "" {
		var r Record
		if json.Unmarshal(cur.Value, &r) == nil && r.Host != cs.me {
			return true, nil
		}
		if string(cur.Value) == string(rec) {
			return false, nil
		}
	}
	err = store.CompareAndSwap(ctx, cs.s, domainsPrefix+d.Spec.Name, cur.Rev, rec, 0)
	if errors.Is(err, store.ErrConflict) {
		return false, nil // changed meanwhile: the next round sees it
	}
	return false, err
}

// PeerAddr is the peer listener address of a live host of the cluster
// (the verbs on its domains are forwarded there).
func (c *Cluster) PeerAddr(ctx context.Context, host string) (string, error) {
	cs, err := c.conn()
	if err != nil {
		return "", err
	}
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	b, err := cs.s.Get(cctx, membersPrefix+host)
	if errors.Is(err, store.ErrNotFound) {
		return "", api.Errorf(api.ErrNotFound, "%q is not a host of this cluster: nothing done", host)
	}
	if err != nil {
		return "", api.Errorf(api.ErrUnavailable, "host %q of the cluster: %v", host, err)
	}
	var r hostRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return "", err
	}
	if _, err := cs.s.Get(cctx, alivePrefix+host); err != nil {
		return "", api.Errorf(api.ErrUnavailable, "host %q, which has the domain, is down (its lease ran out): nothing done", host)
	}
	if r.PeerAddr == "" {
		return "", api.Errorf(api.ErrUnavailable, "host %q has no peer listener (serve --listen): its domains are reached there only", host)
	}
	return r.PeerAddr, nil
}
