package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/etcdmember"
	"github.com/ringfence/ringfence/internal/revert"
	"github.com/ringfence/ringfence/internal/safefile"
	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/store/etcdstore"
)

// A revoked peer's certificate still chains to the cluster's CA, and
// etcd checks only the CA: so `host revoke` also puts the certificate's
// serial under cluster/revoked/, and every member keeps a revocation list
// of those serials (etcd reads it at every new connection and refuses
// the certificates it names). A member whose list gained a serial
// restarts, so the revoked host's open connections end too.

const revokedPrefix = "cluster/revoked/" // NAME: the serial (hex) of its revoked certificate

func (c *Cluster) crlPath() string { return filepath.Join(c.cfg.Dir, "revoked.crl") }

// startMember starts this host's etcd member, with its revocation list
// (an empty one until the cluster's is read: etcd refuses every
// connection while the file is missing).
func (c *Cluster) startMember(ctx context.Context, st state, joined bool) (*etcdmember.Member, error) {
	if _, err := os.Stat(c.crlPath()); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(c.cfg.Dir, 0o700); err != nil {
			return nil, err
		}
		if err := writeCRL(c.crlPath(), nil); err != nil {
			return nil, fmt.Errorf("writing the etcd member's revocation list: %w", err)
		}
	}
	return etcdmember.Start(ctx, c.memberConfig(st, joined))
}

// revokedSerials are the serials under cluster/revoked/, sorted.
func (c *Cluster) revokedSerials(ctx context.Context, cli *clientv3.Client) ([]string, error) {
	return c.serialsUnder(ctx, cli, revokedPrefix)
}

// serialsUnder are the values under a prefix, sorted. A member reads its
// own copy (serializable, in process): a revocation also removes a
// member and restarts the others, and a read through the cluster's
// endpoints then meets a stopped server for seconds; its own copy has
// the serial as soon as the put is applied here.
func (c *Cluster) serialsUnder(ctx context.Context, cli *clientv3.Client, prefix string) ([]string, error) {
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	c.mu.Lock()
	m := c.member
	c.mu.Unlock()
	var vals [][]byte
	if m != nil {
		v, err := m.LocalPrefix(cctx, etcdstore.Prefix+prefix)
		if err != nil {
			return nil, err
		}
		vals = v
	} else {
		resp, err := cli.Get(cctx, etcdstore.Prefix+prefix, clientv3.WithPrefix())
		if err != nil {
			return nil, err
		}
		for _, kv := range resp.Kvs {
			vals = append(vals, kv.Value)
		}
	}
	out := []string{}
	for _, v := range vals {
		out = append(out, string(v))
	}
	sort.Strings(out)
	return out, nil
}

// syncCRL writes the cluster's revoked and superseded serials into this
// member's list when they changed; it reports whether a revoked serial
// was added since the list was last written here (the member is then
// due a restart; a superseded one needs none).
func (c *Cluster) syncCRL(ctx context.Context, cli *clientv3.Client) (bool, error) {
	revoked, err := c.revokedSerials(ctx, cli)
	if err != nil {
		return false, err
	}
	superseded, err := c.serialsUnder(ctx, cli, supersededPrefix)
	if err != nil {
		return false, err
	}
	all := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(revoked), superseded...))))
	c.mu.Lock()
	old, oldAll := c.revoked, c.crl
	c.mu.Unlock()
	if oldAll != nil && slices.Equal(oldAll, all) {
		return false, nil
	}
	if err := os.MkdirAll(c.cfg.Dir, 0o700); err != nil {
		return false, err
	}
	if err := writeCRL(c.crlPath(), all); err != nil {
		return false, fmt.Errorf("writing the etcd member's revocation list: %w", err)
	}
	added := old != nil && slices.ContainsFunc(revoked, func(s string) bool { return !slices.Contains(old, s) })
	c.mu.Lock()
	c.revoked, c.crl = revoked, all
	c.restartDue = c.restartDue || added
	c.mu.Unlock()
	return added, nil
}

// restartMember restarts this host's member: every connection to it
// ends, and each is checked against the revocation list again.
func (c *Cluster) restartMember(ctx context.Context) error {
	c.mu.Lock()
	m := c.member
	c.member = nil
	c.mu.Unlock()
	if m == nil {
		return nil
	}
	m.Close()
	m, err := c.startMember(ctx, c.snapshot(), true)
	if err != nil {
		return fmt.Errorf("restarting this host's etcd member after a revocation: %w", err)
	}
	if ctx.Err() != nil { // the host left or stopped meanwhile
		m.Close()
		return nil
	}
	c.mu.Lock()
	c.member = m
	c.mu.Unlock()
	c.cfg.Log.Info("cluster: etcd member restarted: a revoked host's connections ended")
	return nil
}

// keepCRL is run by the heartbeat: the revocation list follows the
// cluster's, and a new revocation restarts the member, in the
// background (the heartbeat goes on through the other members) and one
// member at a time (restartGap apart, by name), so the cluster keeps its
// quorum and no host's lease runs out.
func (c *Cluster) keepCRL(ctx context.Context, cli *clientv3.Client) {
	if c.snapshot().Etcd != RoleMember {
		c.followRevocations(ctx, cli)
		return
	}
	added, err := c.syncCRL(ctx, cli)
	if err != nil {
		c.cfg.Log.Warn("cluster: keeping the revocation list", "err", err)
	}
	if added { // a member may have gone with the revoked host: drop its endpoint now
		go syncEndpoints(ctx, cli)
	}
	c.mu.Lock()
	due := c.restartDue
	c.restartDue = false
	c.mu.Unlock()
	if !due {
		return
	}
	wait := time.Duration(memberRank(ctx, cli, c.snapshot().Name)) * restartGap
	go func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := c.restartMember(ctx); err != nil {
			c.cfg.Log.Warn("cluster: restarting the etcd member", "err", err)
			return
		}
		c.sweepRevoked(ctx)
	}()
}

// sweepRevoked deletes the revoked hosts' records again. A revoked
// host's connections opened before its revocation stay open until each
// member restarts, and what it wrote through them meanwhile (its
// domains' records, published every 2 s) would outlive it: each member
// sweeps after its restart, so the last one's sweep follows the end of
// the last such connection.
func (c *Cluster) sweepRevoked(ctx context.Context) {
	for try := 0; ; try++ {
		err := c.sweepRevokedOnce(ctx)
		if err == nil {
			return
		}
		if try == 4 {
			c.cfg.Log.Warn("cluster: deleting a revoked host's records after the member's restart", "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second): // the member may be catching up
		}
	}
}

func (c *Cluster) sweepRevokedOnce(ctx context.Context) error {
	cs, err := c.conn()
	if err != nil {
		return err
	}
	var names []string
	cctx, cancel := etcdCtx(ctx)
	err = cs.s.Update(cctx, func(tx store.Tx) error {
		kvs, err := tx.List(revokedPrefix)
		for _, kv := range kvs {
			names = append(names, strings.TrimPrefix(kv.Key, revokedPrefix))
		}
		return err
	})
	cancel()
	if err != nil {
		return err
	}
	for _, name := range names {
		if name == cs.me {
			continue
		}
		if _, err := (&clusterStore{cs.s, name}).dropRecords(ctx); err != nil {
			return err
		}
	}
	return nil
}

// followRevocations: a client host keeps no revocation list, but a new
// revocation may have removed a member, whose endpoint its client drops
// at once rather than at the next auto-sync.
func (c *Cluster) followRevocations(ctx context.Context, cli *clientv3.Client) {
	serials, err := c.revokedSerials(ctx, cli)
	if err != nil {
		return
	}
	c.mu.Lock()
	old := c.followed
	c.followed = serials
	c.mu.Unlock()
	if old != nil && !slices.Equal(old, serials) {
		go syncEndpoints(ctx, cli)
	}
}

// syncEndpoints refreshes the client's endpoints from the member list.
func syncEndpoints(ctx context.Context, cli *clientv3.Client) {
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	cli.Sync(cctx)
}

// restartGap spaces the members' restarts after a revocation.
const restartGap = 8 * time.Second

// memberRank is this member's place among the members by name.
func memberRank(ctx context.Context, cli *clientv3.Client, me string) int {
	ml, err := memberList(ctx, cli)
	if err != nil {
		return 0
	}
	rank := 0
	for _, m := range ml.Members {
		if m.Name < me {
			rank++
		}
	}
	return rank
}

// writeCRL writes a revocation list of serials (hex, as the peer list
// has them). etcd matches the serials of a list and checks no signature
// (client/pkg/transport's checkCRL), so the list is signed by a
// throwaway issuer: who may revoke is who may write cluster/revoked/, a
// host the CA admitted (the authority's `host revoke`).
func writeCRL(path string, serials []string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ringfence cluster revocations"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(100, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	issuer, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		if n, ok := new(big.Int).SetString(s, 16); ok {
			entries = append(entries, x509.RevocationListEntry{SerialNumber: n, RevocationTime: now})
		}
	}
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(now.UnixNano()),
		ThisUpdate: now, NextUpdate: now.AddDate(100, 0, 0), RevokedCertificateEntries: entries}, issuer, key)
	if err != nil {
		return err
	}
	return safefile.WriteFile(path, crl, 0o600)
}

// Remove takes a revoked host out of the cluster (`host revoke` on the
// authority): its etcd member out of the membership first (while every
// member is connected), its records and its domains' deleted, then its
// serial into every member's revocation list (each member restarts, to
// end its open connections, within a heartbeat). It says whether it was
// an etcd member (a client may take its place).
func (c *Cluster) Remove(ctx context.Context, name, serial string) (bool, error) {
	cs, err := c.conn()
	if err != nil {
		return false, err
	}
	if name == cs.me {
		return false, api.Errorf(api.ErrInvalid, "%q is this host: `ringfence cluster leave` takes it out", name)
	}
	again := fmt.Sprintf("(it is still on the peer list: run `ringfence host revoke %s` again once etcd answers)", name)
	wasMember, err := removeMemberNamed(ctx, cs.s.Client(), name)
	if err != nil {
		return wasMember, fmt.Errorf("removing %s's etcd member: %w %s", name, err, again)
	}
	if wasMember {
		// Its server stops now: a request the client sends it meanwhile
		// fails ("raft: stopped"), so its endpoint goes first and the
		// writes below are retried for a few seconds.
		syncEndpoints(ctx, cs.s.Client())
	}
	if err := afterRemoval(ctx, func() error { _, err := (&clusterStore{cs.s, name}).dropRecords(ctx); return err }); err != nil {
		return wasMember, fmt.Errorf("deleting %s's records from the cluster: %w %s", name, err, again)
	}
	if err := afterRemoval(ctx, func() error {
		cctx, cancel := etcdCtx(ctx)
		defer cancel()
		return store.Put(cctx, cs.s, revokedPrefix+name, []byte(serial))
	}); err != nil {
		return wasMember, api.Errorf(api.ErrUnavailable, "recording the revocation of %q in the cluster: %v %s", name, err, again)
	}
	// This member refuses it at once (the others within a heartbeat).
	if c.snapshot().Etcd == RoleMember {
		if _, err := c.syncCRL(ctx, cs.s.Client()); err != nil {
			return wasMember, err
		}
	}
	c.cfg.Log.Info("cluster: a revoked host removed", "name", name, "etcd_member", wasMember)
	return wasMember, nil
}

// afterRemoval runs a write just after a member's removal, retried for
// up to 10 s: the client may still send it to the removed member, whose
// server is stopping.
func afterRemoval(ctx context.Context, write func() error) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := write()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Second)
	}
}

// removeMemberNamed removes the etcd member of that name, if there is one.
func removeMemberNamed(ctx context.Context, cli *clientv3.Client, name string) (bool, error) {
	ml, err := memberList(ctx, cli)
	if err != nil {
		return false, err
	}
	for _, m := range ml.Members {
		if m.Name == name {
			return true, membership(ctx, func(ctx context.Context) error { _, err := cli.MemberRemove(ctx, m.ID); return err })
		}
	}
	return false, nil
}

// Candidate is a live client host to make an etcd member when the
// cluster has fewer than MaxMembers without leaving ("" = none, or no
// need): the first by name. It returns its name and peer address.
func (c *Cluster) Candidate(ctx context.Context, leaving string) (string, string, error) {
	cs, err := c.conn()
	if err != nil {
		return "", "", err
	}
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	hosts, err := c.hosts(cctx, cs.s)
	if err != nil {
		return "", "", err
	}
	members, cand := 0, ""
	for _, h := range hosts {
		switch {
		case h.Name == leaving:
		case h.Etcd == RoleMember:
			members++
		case h.Etcd == RoleClient && h.Alive && cand == "":
			cand = h.Name
		}
	}
	if members >= MaxMembers || cand == "" {
		return "", "", nil
	}
	addr, err := c.PeerAddr(ctx, cand)
	return cand, addr, err
}

// Promote makes this client host an etcd member (a learner, promoted
// once caught up), when the cluster has fewer than MaxMembers.
func (c *Cluster) Promote(ctx context.Context) (api.ClusterStatus, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	cs, err := c.conn()
	if err != nil {
		return api.ClusterStatus{}, err
	}
	st := c.snapshot()
	if st.Etcd != RoleClient {
		return api.ClusterStatus{}, api.Errorf(api.ErrConflict, "%s is an etcd %s already, not a client: nothing changed", st.Name, st.Etcd)
	}
	rv := revert.New()
	defer rv.Fail()
	next, err := c.joinEtcd(ctx, cs.s.Client(), st, rv)
	if err != nil {
		return api.ClusterStatus{}, err
	}
	if next.Etcd != RoleMember {
		return api.ClusterStatus{}, api.Errorf(api.ErrConflict, "the cluster has its %d etcd members: %s stays a client", MaxMembers, st.Name)
	}
	if err := c.save(next); err != nil {
		return api.ClusterStatus{}, err
	}
	rv.Success()
	if err := cs.setRole(ctx, RoleMember); err != nil {
		return api.ClusterStatus{}, err
	}
	c.cfg.Log.Info("cluster: this host is now an etcd member", "name", st.Name, "endpoints", strings.Join(next.Endpoints, ","))
	return c.Status(ctx)
}

// setRole records this host's etcd role in its host record.
func (cs *clusterStore) setRole(ctx context.Context, role string) error {
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	return cs.s.Update(cctx, func(tx store.Tx) error {
		b, err := tx.Get(membersPrefix + cs.me)
		if err != nil {
			return err
		}
		var r hostRecord
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		r.Etcd = role
		b, _ = json.Marshal(r)
		return tx.Put(membersPrefix+cs.me, b)
	})
}
