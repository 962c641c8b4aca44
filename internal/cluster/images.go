package cluster

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store"
)

// imagesPrefix: cluster/images/HOST is the names of the OS images the
// host has (create --image goes only to a host that has its image).
const imagesPrefix = "cluster/images/"

// PublishImages records the names of this host's images (written only
// when they changed).
func (c *Cluster) PublishImages(ctx context.Context, names []string) error {
	cs, err := c.conn()
	if err != nil {
		return err
	}
	sort.Strings(names)
	b, _ := json.Marshal(slices.Compact(names))
	return cs.putIfChanged(ctx, imagesPrefix+cs.me, b)
}

// putIfChanged writes one of this host's keys only when its value changed
// (no new revision, no watcher woken, for nothing).
func (cs *clusterStore) putIfChanged(ctx context.Context, key string, b []byte) error {
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	return cs.s.Update(cctx, func(tx store.Tx) error {
		if cur, err := tx.Get(key); err == nil && string(cur) == string(b) {
			return nil
		}
		return tx.Put(key, b)
	})
}

// ImageHosts are the hosts of the cluster that have an image of that
// name, sorted.
func (c *Cluster) ImageHosts(ctx context.Context, image string) ([]string, error) {
	_, kvs, err := c.listed(ctx, imagesPrefix)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, kv := range kvs {
		var names []string
		if json.Unmarshal(kv.Value, &names) == nil && slices.Contains(names, image) {
			out = append(out, strings.TrimPrefix(kv.Key, imagesPrefix))
		}
	}
	sort.Strings(out)
	return out, nil
}

// ImageRefusal is the refusal of create --image on a host without the
// image (host "" = placement found none with it that can take it): it
// names the hosts that have it.
func ImageRefusal(image, host string, have []string) error {
	switch {
	case len(have) == 0:
		return api.Errorf(api.ErrNotFound, "image %s is on no host of the cluster: `ringfence image build %s` on one; nothing created", image, image)
	case host == "":
		return api.Errorf(api.ErrInsufficient, "image %s is on %s only, and none of them can take the domain now (down, evacuated, a witness or full): build the image on another host, or make room; nothing created", image, strings.Join(have, ", "))
	}
	return api.Errorf(api.ErrNotFound, "image %s is not on host %s: it is on %s; create it there (--host %s) or build the image on %s; nothing created",
		image, host, strings.Join(have, ", "), have[0], host)
}
