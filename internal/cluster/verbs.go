package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/etcdmember"
	"github.com/ringfence/ringfence/internal/revert"
	"github.com/ringfence/ringfence/internal/safefile"
	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/store/etcdstore"
)

// The cluster's keyspace (under etcdstore.Prefix); docs/cluster.md has it whole.
const (
	membersPrefix = "cluster/members/" // NAME: a hostRecord, while it is in the cluster
	alivePrefix   = "cluster/alive/"   // NAME: bound to its lease; gone = not heard from
)

// LeaseTTL is how long a host's record outlives its last renewal.
const LeaseTTL = 10 * time.Second

const renewEvery = LeaseTTL / 4

// hostRecord is a host of the cluster (cluster/members/NAME).
type hostRecord struct {
	Name    string    `json:"name"`
	Addr    string    `json:"addr"`
	Etcd    string    `json:"etcd"`
	Witness bool      `json:"witness,omitempty"`
	Joined  time.Time `json:"joined"`
	// PeerAddr is its peer listener (HOST:PORT), where verbs on its
	// domains are forwarded.
	PeerAddr string `json:"peer_addr,omitempty"`
}

// heartbeat keeps cluster/alive/NAME bound to a live lease until ctx
// ends. The lease is kept in STATE/cluster/lease so a daemon restarted
// within the TTL renews the same one (the HA owner keys bound to it
// stay). Each success is told to Config.Renewed with the time the
// renewal was sent (the fence deadline counts from it).
func (c *Cluster) heartbeat(ctx context.Context, s *etcdstore.Etcd) error {
	name := c.snapshot().Name
	lease := c.savedLease()
	for {
		sent := time.Now()
		// A renewal is bounded by its period: a slow one is retried
		// rather than waited for (the fence deadline does not wait).
		cctx, cancel := context.WithTimeout(ctx, renewEvery)
		err := s.KeepAlive(cctx, lease)
		if lease == 0 || errors.Is(err, store.ErrNoLease) {
			if lease != 0 { // the keys on it (HA owner keys) went with it
				c.cfg.Log.Warn("cluster: this host's lease had expired; granting a new one", "lease", int64(lease))
			}
			lease, err = c.newLease(cctx, s, name)
		}
		cancel()
		next := renewEvery
		if err != nil {
			if c.setReady(fmt.Sprintf("etcd unreachable: %v", err)) {
				c.cfg.Log.Warn("cluster: lease renewal failed", "err", err, "sent", sent.UTC().Format(time.RFC3339Nano))
			}
			next = renewEvery / 5
		} else {
			c.setReady("")
			c.mu.Lock()
			c.lease = lease
			c.mu.Unlock()
			if c.cfg.Renewed != nil {
				c.cfg.Renewed(sent)
			}
			c.keepCRL(ctx, s.Client())
			go c.flushSuperseded(ctx)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(next):
		}
	}
}

// newLease grants a lease, binds the alive key to it and keeps its ID.
func (c *Cluster) newLease(ctx context.Context, s *etcdstore.Etcd, name string) (store.LeaseID, error) {
	lease, err := s.Grant(ctx, LeaseTTL)
	if err != nil {
		return 0, err
	}
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.PutLeased(alivePrefix+name, []byte("1"), lease) }); err != nil {
		return 0, err
	}
	if err := safefile.WriteFile(c.leasePath(), []byte(strconv.FormatInt(int64(lease), 10)), 0o600); err != nil {
		c.cfg.Log.Warn("cluster: keeping the lease ID", "err", err)
	}
	return lease, nil
}

func (c *Cluster) leasePath() string { return filepath.Join(c.cfg.Dir, "lease") }

func (c *Cluster) savedLease() store.LeaseID {
	b, err := os.ReadFile(c.leasePath())
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return store.LeaseID(n)
}

// Lease is this host's live lease (0: none yet).
func (c *Cluster) Lease() store.LeaseID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lease
}

// Init makes this host the first of a new cluster: an etcd member of its
// own (or, with --etcd-endpoints, a client of that cluster).
func (c *Cluster) Init(ctx context.Context, me Me) (api.ClusterStatus, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if err := c.notIn(); err != nil {
		return api.ClusterStatus{}, err
	}
	st := state{Name: me.Name, Addr: me.Addr, PeerAddr: me.PeerAddr, Etcd: RoleMember, Joined: time.Now().UTC()}
	rv := revert.New()
	defer rv.Fail()
	if len(c.cfg.Endpoints) > 0 {
		st.Etcd, st.Endpoints = RoleExternal, c.cfg.Endpoints
	} else {
		st.Endpoints = []string{c.url(me.Addr, c.cfg.ClientPort)}
		st.Cluster = me.Name + "=" + c.url(me.Addr, c.cfg.PeerPort)
		m, err := c.startMember(ctx, st, false)
		if err != nil {
			os.RemoveAll(c.dataDir())
			return api.ClusterStatus{}, fmt.Errorf("starting this host's etcd member on %s: %w", me.Addr, err)
		}
		rv.Add(func() { m.Close(); os.RemoveAll(c.dataDir()) })
		c.mu.Lock()
		c.member = m
		c.mu.Unlock()
		rv.Add(func() { c.mu.Lock(); c.member = nil; c.mu.Unlock() })
	}
	if err := c.enter(ctx, st, rv); err != nil {
		return api.ClusterStatus{}, err
	}
	rv.Success()
	c.cfg.Log.Info("cluster: initialised", "name", me.Name, "etcd", st.Etcd, "endpoints", st.Endpoints)
	return c.Status(ctx)
}

// enter records this host in the cluster (its member record, refused on
// a name clash; cluster.json) and starts its heartbeat.
func (c *Cluster) enter(ctx context.Context, st state, rv *revert.Reverter) error {
	cli, err := etcdmember.Dial(append([]string(nil), st.Endpoints...), c.cfg.ID)
	if err != nil {
		return err
	}
	s := etcdstore.New(cli, etcdstore.Prefix)
	rv.Add(func() { s.Close() })
	rec, _ := json.Marshal(hostRecord{Name: st.Name, Addr: st.Addr, Etcd: st.Etcd, Witness: st.Witness, Joined: st.Joined, PeerAddr: st.PeerAddr})
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	if err := store.CompareAndSwap(cctx, s, membersPrefix+st.Name, 0, rec, 0); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return api.Errorf(api.ErrConflict, "a host named %q is already in the cluster: join under another name (--peer-name), or make it leave first", st.Name)
		}
		return fmt.Errorf("recording this host in the cluster: %w", err)
	}
	rv.Add(func() { store.Delete(context.Background(), s, membersPrefix+st.Name) })
	if err := c.save(st); err != nil {
		return err
	}
	rv.Add(func() { os.Remove(c.statePath()); c.mu.Lock(); c.st = nil; c.mu.Unlock() })
	c.mu.Lock()
	c.store, c.ready = s, "starting"
	c.mu.Unlock()
	c.startRunning(func(ctx context.Context) error { return c.heartbeat(ctx, s) })
	return nil
}

func (c *Cluster) notIn() error {
	if st := c.snapshot(); st.Name != "" {
		return api.Errorf(api.ErrConflict, "this host is already in a cluster as %q: `ringfence cluster leave` first", st.Name)
	}
	return nil
}

// Join adds this host to the cluster whose etcd answers at seed (the
// authority's address): as a member while it has fewer than MaxMembers
// voting members (a witness always is one), else as a client.
func (c *Cluster) Join(ctx context.Context, me Me, seed string, witness bool) (api.ClusterStatus, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if err := c.notIn(); err != nil {
		return api.ClusterStatus{}, err
	}
	endpoints := c.cfg.Endpoints
	if len(endpoints) == 0 {
		endpoints = []string{c.url(seed, c.cfg.ClientPort)}
	}
	cli, err := etcdmember.Dial(append([]string(nil), endpoints...), c.cfg.ID)
	if err != nil {
		return api.ClusterStatus{}, err
	}
	defer cli.Close()
	if err := nameFree(ctx, cli, me.Name); err != nil {
		return api.ClusterStatus{}, err
	}
	st := state{Name: me.Name, Addr: me.Addr, PeerAddr: me.PeerAddr, Etcd: RoleExternal, Witness: witness, Endpoints: endpoints, Joined: time.Now().UTC()}
	rv := revert.New()
	defer rv.Fail()
	if len(c.cfg.Endpoints) == 0 {
		if st, err = c.joinEtcd(ctx, cli, st, rv); err != nil {
			return api.ClusterStatus{}, err
		}
	}
	if err := c.enter(ctx, st, rv); err != nil {
		return api.ClusterStatus{}, err
	}
	rv.Success()
	c.cfg.Log.Info("cluster: joined", "name", me.Name, "etcd", st.Etcd, "endpoints", st.Endpoints)
	return c.Status(ctx)
}

// nameFree refuses a name the cluster has already (a host record, or an
// etcd member of that name).
func nameFree(ctx context.Context, cli *clientv3.Client, name string) error {
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	resp, err := cli.Get(cctx, etcdstore.Prefix+membersPrefix+name)
	if err != nil {
		return api.Errorf(api.ErrUnavailable, "reaching the cluster's etcd: %v", err)
	}
	ml, err := memberList(ctx, cli)
	if err != nil {
		return err
	}
	taken := len(resp.Kvs) > 0
	for _, m := range ml.Members {
		taken = taken || m.Name == name
	}
	if taken {
		return api.Errorf(api.ErrConflict, "a host named %q is already in the cluster: join under another name (--peer-name), or make it leave first", name)
	}
	return nil
}

// joinEtcd makes this host a member (a learner first, promoted once it
// has caught up, so a member that never starts never costs the quorum)
// or, when the cluster has its members, a client of them.
func (c *Cluster) joinEtcd(ctx context.Context, cli *clientv3.Client, st state, rv *revert.Reverter) (state, error) {
	ml, err := memberList(ctx, cli)
	if err != nil {
		return st, err
	}
	var peers, clients []string
	for _, m := range ml.Members {
		peers = append(peers, m.Name+"="+strings.Join(m.PeerURLs, ","))
		clients = append(clients, m.ClientURLs...)
	}
	st.Etcd, st.Endpoints = RoleClient, clients
	if len(ml.Members) >= MaxMembers && !st.Witness {
		return st, nil
	}
	if len(ml.Members) >= MaxMembers {
		return st, api.Errorf(api.ErrConflict, "the cluster has its %d etcd members already: a witness adds a vote only to a smaller cluster", MaxMembers)
	}
	peerURL := c.url(st.Addr, c.cfg.PeerPort)
	id, err := addLearner(ctx, cli, peerURL)
	if err != nil {
		return st, err
	}
	rv.Add(func() {
		cctx, cancel := etcdCtx(context.Background())
		defer cancel()
		cli.MemberRemove(cctx, id)
	})
	st.Etcd = RoleMember
	st.Cluster = strings.Join(append(peers, st.Name+"="+peerURL), ",")
	st.Endpoints = append([]string{c.url(st.Addr, c.cfg.ClientPort)}, clients...)
	if _, err := c.syncCRL(ctx, cli); err != nil {
		return st, fmt.Errorf("reading the cluster's revocations: %w", err)
	}
	m, err := c.startMember(ctx, st, true)
	if err != nil {
		os.RemoveAll(c.dataDir())
		return st, fmt.Errorf("starting this host's etcd member: %w", err)
	}
	rv.Add(func() { m.Close(); os.RemoveAll(c.dataDir()) })
	if err := promote(ctx, cli, id); err != nil {
		return st, err
	}
	c.mu.Lock()
	c.member = m
	c.mu.Unlock()
	rv.Add(func() { c.mu.Lock(); c.member = nil; c.mu.Unlock() })
	return st, nil
}

// membership runs a change of etcd's membership. etcd refuses one until
// every member has been connected for a few seconds (a member that just
// joined or restarted): that refusal is waited out.
func membership(ctx context.Context, change func(context.Context) error) error {
	deadline := time.Now().Add(etcdmember.StartTimeout)
	for {
		cctx, cancel := etcdCtx(ctx)
		err := change(cctx)
		cancel()
		if err == nil || !errors.Is(err, rpctypes.ErrUnhealthy) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Second)
	}
}

// addLearner adds a learner member (it has no vote until promoted).
func addLearner(ctx context.Context, cli *clientv3.Client, peerURL string) (uint64, error) {
	var id uint64
	err := membership(ctx, func(ctx context.Context) error {
		added, err := cli.MemberAddAsLearner(ctx, []string{peerURL})
		if err == nil {
			id = added.Member.ID
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("adding this host's etcd member %s: %w", peerURL, err)
	}
	return id, nil
}

// promote makes a learner a voting member once it has caught up.
func promote(ctx context.Context, cli *clientv3.Client, id uint64) error {
	deadline := time.Now().Add(etcdmember.StartTimeout)
	for {
		cctx, cancel := etcdCtx(ctx)
		_, err := cli.MemberPromote(cctx, id)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("this host's etcd member did not catch up within %s: %w", etcdmember.StartTimeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Leave takes this host out of the cluster: its member out of etcd's
// membership, its records deleted, its data and cluster.json removed. A
// member whose leaving would leave the others without a quorum of their
// own, or the last member while other hosts remain, is refused.
func (c *Cluster) Leave(ctx context.Context) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	st := c.snapshot()
	if st.Name == "" {
		return api.Errorf(api.ErrInvalid, "this host is in no cluster")
	}
	c.mu.Lock()
	s := c.store
	c.mu.Unlock()
	if s == nil {
		return api.Errorf(api.ErrUnavailable, "this host has not reached the cluster's etcd yet (`ringfence cluster status` says why): nothing changed")
	}
	last, err := c.mayLeave(ctx, s, st)
	if err != nil {
		return err
	}
	// The records go first, while this host's member still serves it
	// (its client may reach the cluster through it); the heartbeat is
	// stopped first so it cannot write its record again.
	c.stopRunning()
	rv := revert.New()
	defer rv.Fail()
	rv.Add(func() { c.startRunning(func(ctx context.Context) error { return c.heartbeat(ctx, s) }) })
	cs := &clusterStore{s, st.Name}
	rec, err := cs.dropRecords(ctx)
	if err != nil {
		return fmt.Errorf("deleting this host's records from the cluster: %w: nothing changed", err)
	}
	rv.Add(func() { store.Put(context.Background(), s, membersPrefix+st.Name, rec) })
	// The last member is not removed (etcd cannot remove its only
	// member): the cluster ends with it, its data deleted below.
	if st.Etcd == RoleMember && !last {
		if err := removeMember(ctx, s.Client(), st.Name); err != nil {
			return err
		}
	}
	rv.Success()
	c.Close()
	os.RemoveAll(c.dataDir())
	os.Remove(c.leasePath())
	os.Remove(c.crlPath())
	os.Remove(c.supersededPath())
	if err := os.Remove(c.statePath()); err != nil {
		return err
	}
	c.mu.Lock()
	c.st, c.ready, c.revoked, c.crl = nil, "", nil, nil
	c.mu.Unlock()
	c.cfg.Log.Info("cluster: left", "name", st.Name)
	return nil
}

// dropRecords deletes this host's records and its domains' (a leave);
// it returns its member record, to put back if the leave fails.
func (cs *clusterStore) dropRecords(ctx context.Context) ([]byte, error) {
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	var rec []byte
	err := cs.s.Update(cctx, func(tx store.Tx) error {
		var err error
		// (a host revoked before its record was written has none)
		if rec, err = tx.Get(membersPrefix + cs.me); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		kvs, err := tx.List(domainsPrefix)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			var r Record
			if json.Unmarshal(kv.Value, &r) == nil && r.Host == cs.me {
				tx.Delete(kv.Key)
			}
		}
		for _, p := range []string{membersPrefix, capacityPrefix, excludedPrefix, alivePrefix, imagesPrefix} {
			tx.Delete(p + cs.me)
		}
		return nil
	})
	return rec, err
}

// mayLeave refuses the leave of the last etcd member while other hosts
// still depend on it; it says whether this is the last member.
func (c *Cluster) mayLeave(ctx context.Context, s *etcdstore.Etcd, st state) (bool, error) {
	if st.Etcd != RoleMember {
		return false, nil
	}
	ml, err := memberList(ctx, s.Client())
	if err != nil {
		return false, err
	}
	if len(ml.Members) > 1 {
		return false, nil
	}
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	hosts, err := s.List(cctx, membersPrefix)
	if err != nil {
		return false, err
	}
	var others []string
	for _, h := range hosts {
		if n := strings.TrimPrefix(h.Key, membersPrefix); n != st.Name {
			others = append(others, n)
		}
	}
	if len(others) > 0 {
		return true, api.Errorf(api.ErrConflict, "this host runs the cluster's last etcd member and %s still use it: they leave first; nothing changed", strings.Join(others, ", "))
	}
	return true, nil
}

func removeMember(ctx context.Context, cli *clientv3.Client, name string) error {
	if _, err := removeMemberNamed(ctx, cli, name); err != nil {
		return fmt.Errorf("removing this host's etcd member: %w: nothing changed", err)
	}
	return nil
}

// Status is `cluster status`.
func (c *Cluster) Status(ctx context.Context) (api.ClusterStatus, error) {
	st := c.snapshot()
	if st.Name == "" {
		return api.ClusterStatus{}, api.Errorf(api.ErrNotFound, "this host is in no cluster: `ringfence cluster init` on the first host, `ringfence cluster join TOKEN` on the others")
	}
	c.mu.Lock()
	out := api.ClusterStatus{Name: st.Name, Etcd: st.Etcd, State: c.ready, Endpoints: st.Endpoints}
	s := c.store
	c.mu.Unlock()
	if out.State == "" {
		out.State = "ready"
	}
	if s == nil {
		return out, nil
	}
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	hosts, err := c.hosts(cctx, s)
	if err != nil {
		out.State = fmt.Sprintf("etcd unreachable: %v", err)
		return out, nil
	}
	out.Hosts = hosts
	return out, nil
}

// hosts reads every host record with its liveness and etcd vote.
func (c *Cluster) hosts(ctx context.Context, s *etcdstore.Etcd) ([]api.ClusterHost, error) {
	recs, err := s.List(ctx, membersPrefix)
	if err != nil {
		return nil, err
	}
	alive, err := s.List(ctx, alivePrefix)
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, kv := range alive {
		live[strings.TrimPrefix(kv.Key, alivePrefix)] = true
	}
	excl, err := s.List(ctx, excludedPrefix)
	if err != nil {
		return nil, err
	}
	excluded := map[string]bool{}
	for _, kv := range excl {
		excluded[strings.TrimPrefix(kv.Key, excludedPrefix)] = true
	}
	voting := map[string]bool{}
	leader := ""
	if ml, err := s.Client().MemberList(ctx); err == nil {
		lead := c.leaderID(ctx, s.Client())
		for _, m := range ml.Members {
			voting[m.Name] = !m.IsLearner
			if m.ID == lead {
				leader = m.Name
			}
		}
	}
	var out []api.ClusterHost
	for _, kv := range recs {
		var r hostRecord
		if json.Unmarshal(kv.Value, &r) != nil {
			continue
		}
		out = append(out, api.ClusterHost{Name: r.Name, Addr: r.Addr, Etcd: r.Etcd, Witness: r.Witness,
			Alive: live[r.Name], Joined: r.Joined, Voting: voting[r.Name], Leader: leader != "" && leader == r.Name, Excluded: excluded[r.Name]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// leaderID is etcd's leader's member ID as this host's member knows it,
// or as the first endpoint that answers within a moment says (0: none
// said): a status must not wait on a host that is down.
func (c *Cluster) leaderID(ctx context.Context, cli *clientv3.Client) uint64 {
	c.mu.Lock()
	m := c.member
	c.mu.Unlock()
	if m != nil {
		return m.LeaderID()
	}
	for _, ep := range cli.Endpoints() {
		sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		st, err := cli.Status(sctx, ep)
		cancel()
		if err == nil {
			return st.Leader
		}
	}
	return 0
}

// AddrOf picks the address a host is reached at: the first IP among its
// certificate's names (etcd checks a peer's address against them).
func AddrOf(names []string) (string, error) {
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil && !ip.IsLoopback() {
			return n, nil
		}
	}
	for _, n := range names {
		if net.ParseIP(n) != nil {
			return n, nil
		}
	}
	return "", api.Errorf(api.ErrInvalid, "this host's certificate names no IP address (%s): etcd members are reached by address; give one with --name IP", strings.Join(names, ", "))
}
