package cluster

import (
	"context"
	"time"
)

// Why etcd's leader is kept off the hosts with HA guests: when the
// leader's host fails, the followers first elect a new leader (one
// election timeout, up to twice that), and the new leader extends every
// lease by its TTL; the failed host's owner keys then expire 5-8 s later
// than a follower's would (bench/failover: 18.3 s to QEMU against 11 s).
// So a leader that owns HA guests hands its leadership to a live voting
// member that owns fewer (a witness owns none). The leader's count only
// falls with each move, so moves do not ping-pong; leaderMoveGap spaces
// them while the counts change.

// leaderMoveGap is the least time between two leadership moves by one
// host.
const (
	leaderMoveGap  = 30 * time.Second
	leaderCheckGap = 5 * time.Second
)

// KeepLeaderOffHA hands etcd's leadership away from this host when it
// leads and owns more HA guests than another live voting member;
// haOwned counts the owner keys per host. It returns the new leader's
// name ("" if nothing moved).
func (c *Cluster) KeepLeaderOffHA(ctx context.Context, haOwned map[string]int) (string, error) {
	me := c.snapshot().Name
	c.mu.Lock()
	m := c.member
	// Checked (and moved) at most every leaderCheckGap / leaderMoveGap;
	// noted under the lock, so two callers never both go on.
	skip := m == nil || haOwned[me] == 0 || time.Since(c.leaderMoved) < leaderMoveGap || time.Since(c.leaderChecked) < leaderCheckGap
	if !skip {
		c.leaderChecked = time.Now()
	}
	c.mu.Unlock()
	if skip || !m.Leads() {
		return "", nil
	}
	cs, err := c.conn()
	if err != nil {
		return "", err
	}
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	hosts, err := c.hosts(cctx, cs.s)
	if err != nil {
		return "", err
	}
	to, best := "", haOwned[me]
	for _, h := range hosts { // by name: the first of the fewest
		if h.Name != me && h.Voting && h.Alive && haOwned[h.Name] < best {
			to, best = h.Name, haOwned[h.Name]
		}
	}
	if to == "" {
		return "", nil
	}
	c.mu.Lock()
	c.leaderMoved = time.Now()
	c.mu.Unlock()
	if err := m.HandLeadership(cctx, to); err != nil {
		return "", err
	}
	c.cfg.Log.Info("cluster: etcd's leadership handed to a host with fewer HA guests", "to", to, "its_ha", best, "here", haOwned[me])
	return to, nil
}
