package cluster

import (
	"context"
	"errors"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store"
)

// Networks and pools declared cluster-wide: the declaration (the
// network's or pool's own JSON) lives in etcd, and every host makes the
// same bridge/uplink or the same shared-path pool locally from it.
const (
	KindNetwork = "network"
	KindPool    = "pool"
)

var declPrefix = map[string]string{KindNetwork: "cluster/networks/", KindPool: "cluster/pools/"}

// Declare records a cluster-wide network or pool (refused when the
// cluster has one of that name).
func (c *Cluster) Declare(ctx context.Context, kind, name string, spec []byte) error {
	cs, err := c.conn()
	if err != nil {
		return err
	}
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	err = store.CompareAndSwap(cctx, cs.s, declPrefix[kind]+name, 0, spec, 0)
	if errors.Is(err, store.ErrConflict) {
		return api.Errorf(api.ErrConflict, "the cluster has a %s named %q already (`ringfence %s list`): pick another name; nothing changed", kind, name, kind)
	}
	if err != nil {
		return api.Errorf(api.ErrUnavailable, "declaring %s %s in the cluster: %v; nothing changed", kind, name, err)
	}
	return nil
}

// Undeclare deletes a cluster-wide declaration: every host removes its
// copy at its next sync.
func (c *Cluster) Undeclare(ctx context.Context, kind, name string) error {
	cs, err := c.conn()
	if err != nil {
		return err
	}
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	if err := store.Delete(cctx, cs.s, declPrefix[kind]+name); err != nil && !errors.Is(err, store.ErrNotFound) {
		return api.Errorf(api.ErrUnavailable, "deleting %s %s from the cluster: %v; nothing changed", kind, name, err)
	}
	return nil
}

// Declared are the cluster-wide declarations of a kind, by name.
func (c *Cluster) Declared(ctx context.Context, kind string) (map[string][]byte, error) {
	_, kvs, err := c.listed(ctx, declPrefix[kind])
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, kv := range kvs {
		out[strings.TrimPrefix(kv.Key, declPrefix[kind])] = kv.Value
	}
	return out, nil
}
