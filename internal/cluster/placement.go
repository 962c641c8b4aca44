package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store"
)

// capacityPrefix: cluster/capacity/NAME is a host's free figures from its
// own ledger (memory including QEMU overhead, vCPUs), published with its
// domains. The host's ledger stays the judge: placement only chooses
// where to ask, so the cluster never oversells what a host would not.
const capacityPrefix = "cluster/capacity/"

// Room is a host's free figures as placement sees them.
type Room struct {
	Host      string `json:"host"`
	FreeMiB   int    `json:"free_mib"`
	VCPUsFree int    `json:"vcpus_free"`
	TotalMiB  int    `json:"total_mib"`
	Alive     bool   `json:"-"`
	Witness   bool   `json:"-"`
	Excluded  bool   `json:"-"` // evacuated: takes no domains until resumed
}

// excludedPrefix: cluster/excluded/NAME marks a host evacuated (`host
// evacuate`); `host resume` deletes it.
const excludedPrefix = "cluster/excluded/"

// SetExcluded marks a host of the cluster evacuated (or resumed).
func (c *Cluster) SetExcluded(ctx context.Context, host string, on bool) error {
	cs, err := c.conn()
	if err != nil {
		return err
	}
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	return cs.s.Update(cctx, func(tx store.Tx) error {
		if _, err := tx.Get(membersPrefix + host); err != nil {
			return api.Errorf(api.ErrNotFound, "%q is not a host of this cluster: nothing changed", host)
		}
		if on {
			return tx.Put(excludedPrefix+host, []byte("1"))
		}
		return tx.Delete(excludedPrefix + host)
	})
}

// Name is this host's name in the cluster ("" in none).
func (c *Cluster) Name() string { return c.snapshot().Name }

// Witness says whether this host is an etcd-only witness (no domains).
func (c *Cluster) Witness() bool { return c.snapshot().Witness }

// Need is what a domain asks of a host's ledger.
type Need struct {
	Name   string
	MemMiB int // maxmem + QEMU overhead
	VCPUs  int // maxvcpus
}

// PublishRoom writes this host's free figures.
func (c *Cluster) PublishRoom(ctx context.Context, l api.Ledger) error {
	cs, err := c.conn()
	if err != nil {
		return err
	}
	b, _ := json.Marshal(Room{Host: cs.me, FreeMiB: l.FreeMiB, VCPUsFree: l.VCPUsFree, TotalMiB: l.TotalMiB})
	return cs.putIfChanged(ctx, capacityPrefix+cs.me, b)
}

// Rooms are every host's figures, with whether it is up and a witness
// (a host that never published has none free).
func (c *Cluster) Rooms(ctx context.Context) ([]Room, error) {
	cs, err := c.conn()
	if err != nil {
		return nil, err
	}
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	hosts, err := c.hosts(cctx, cs.s)
	if err != nil {
		return nil, api.Errorf(api.ErrUnavailable, "reading the cluster's hosts: %v", err)
	}
	kvs, err := cs.s.List(cctx, capacityPrefix)
	if err != nil {
		return nil, api.Errorf(api.ErrUnavailable, "reading the hosts' free figures: %v", err)
	}
	rooms := map[string]Room{}
	for _, kv := range kvs {
		var r Room
		if json.Unmarshal(kv.Value, &r) == nil {
			rooms[r.Host] = r
		}
	}
	out := make([]Room, 0, len(hosts))
	for _, h := range hosts {
		r := rooms[h.Name]
		r.Host, r.Alive, r.Witness, r.Excluded = h.Name, h.Alive, h.Witness, h.Excluded
		out = append(out, r)
	}
	return out, nil
}

// Place orders the hosts that have room for need, the most free memory
// first (the caller asks each in turn: its ledger decides); none having
// room is ErrInsufficient with every host's figures.
func Place(need Need, rooms []Room) ([]string, error) {
	var fit []Room
	var why []string
	for _, r := range rooms {
		switch {
		case !r.Alive:
			why = append(why, r.Host+" down")
		case r.Witness:
			why = append(why, r.Host+" witness (no domains)")
		case r.Excluded:
			why = append(why, r.Host+" evacuated (`host resume` brings it back)")
		case r.FreeMiB < need.MemMiB || r.VCPUsFree < need.VCPUs:
			why = append(why, fmt.Sprintf("%s %d MiB, %d vCPUs free", r.Host, r.FreeMiB, r.VCPUsFree))
		default:
			fit = append(fit, r)
		}
	}
	if len(fit) == 0 {
		return nil, api.Errorf(api.ErrInsufficient, "no host of the cluster has room for %s (%d MiB with QEMU overhead, %d vCPUs): %s; free memory on a host, or lower memory/vcpus",
			need.Name, need.MemMiB, need.VCPUs, strings.Join(why, "; "))
	}
	sort.SliceStable(fit, func(i, j int) bool {
		if fit[i].FreeMiB != fit[j].FreeMiB {
			return fit[i].FreeMiB > fit[j].FreeMiB
		}
		return fit[i].Host < fit[j].Host
	})
	out := make([]string, len(fit))
	for i, r := range fit {
		out[i] = r.Host
	}
	return out, nil
}
