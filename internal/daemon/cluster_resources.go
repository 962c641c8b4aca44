package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/cluster"
)

// Networks and pools declared cluster-wide (`--cluster`): made here
// first (so a bad one is refused with this host's own error), then
// declared in etcd; every other host, and every host that joins later,
// makes the same one from the declaration at its next sync (publishEvery).
// A delete is refused while any host's domain uses it.

// createNetwork is `network create`, cluster-wide with --cluster.
func (s *Server) createNetwork(ctx context.Context, req api.Network) (api.Network, error) {
	if !req.Cluster {
		return s.nets.Create(ctx, req)
	}
	if err := s.declarable("network", req.Tenant, req.NAT || req.Subnet != ""); err != nil {
		return req, err
	}
	s.declMu.Lock()
	defer s.declMu.Unlock()
	n, err := s.nets.Create(ctx, req)
	if err != nil {
		return n, err
	}
	spec, _ := json.Marshal(api.Network{Name: n.Name, Bridge: n.Bridge, Uplink: n.Uplink, Shared: n.Shared, Cluster: true})
	if err := s.cluster.Declare(ctx, cluster.KindNetwork, n.Name, spec); err != nil {
		s.nets.Delete(ctx, n.Name)
		return req, err
	}
	return n, nil
}

// createPool is `pool create`, cluster-wide with --cluster.
func (s *Server) createPool(ctx context.Context, req api.Pool) (api.Pool, error) {
	if !req.Cluster {
		return s.pools.Create(ctx, req)
	}
	if err := s.declarable("pool", req.Tenant, false); err != nil {
		return req, err
	}
	s.declMu.Lock()
	defer s.declMu.Unlock()
	p, err := s.pools.Create(ctx, req)
	if err != nil {
		return p, err
	}
	spec, _ := json.Marshal(api.Pool{Name: p.Name, Dir: p.Dir, Shared: p.Shared, Cluster: true})
	if err := s.cluster.Declare(ctx, cluster.KindPool, p.Name, spec); err != nil {
		s.pools.Delete(ctx, p.Name)
		return req, err
	}
	return p, nil
}

// declarable refuses what cannot be cluster-wide.
func (s *Server) declarable(kind, tenant string, nat bool) error {
	switch {
	case !s.cluster.In():
		return api.Errorf(api.ErrInvalid, "--cluster: this host is in no cluster; create the %s without it", kind)
	case tenant != "":
		return api.Errorf(api.ErrInvalid, "--cluster with --tenant: tenants are a host's, not the cluster's; create the %s on each host", kind)
	case nat:
		return api.Errorf(api.ErrInvalid, "--cluster with --nat: a NAT network is private to its host (its own DHCP and masquerade); declare a bridged network (--bridge, --uplink)")
	}
	return nil
}

// deleteNetwork is `network delete`: a cluster-wide one only while no
// domain of any host has a vif on it, then on every host.
func (s *Server) deleteNetwork(ctx context.Context, name string) error {
	n, err := s.nets.Get(name)
	if err != nil || !n.Cluster || !s.cluster.In() {
		return s.nets.Delete(ctx, name)
	}
	return s.deleteDeclared(ctx, cluster.KindNetwork, name, "in use by", func(sp api.DomainSpec) bool {
		return slices.ContainsFunc(sp.Vifs, func(v api.Vif) bool { return v.Bridge == n.Name || v.Bridge == n.Bridge })
	}, func() error { return s.nets.Delete(ctx, name) })
}

// deletePool is `pool delete`: a cluster-wide one only while no domain
// of any host has a disk in it, then on every host.
func (s *Server) deletePool(ctx context.Context, name string) error {
	p, err := s.pools.Get(ctx, name)
	if err != nil || !p.Cluster || !s.cluster.In() {
		return s.pools.Delete(ctx, name)
	}
	return s.deleteDeclared(ctx, cluster.KindPool, name, "holds disks of", func(sp api.DomainSpec) bool {
		return slices.ContainsFunc(sp.Disks, func(d api.Disk) bool {
			return d.Target != "" && strings.HasPrefix(filepath.Clean(d.Target), filepath.Clean(p.Dir)+"/")
		})
	}, func() error { return s.pools.Delete(ctx, name) })
}

// deleteDeclared refuses while a domain of any host uses the network or
// pool, then deletes its declaration (every host removes its copy at
// its next sync) and, with del, this host's.
func (s *Server) deleteDeclared(ctx context.Context, kind, name, use string, uses func(api.DomainSpec) bool, del func() error) error {
	s.declMu.Lock()
	defer s.declMu.Unlock()
	users, err := s.clusterUsers(ctx, uses)
	if err == nil && len(users) > 0 {
		err = api.Errorf(api.ErrConflict, "%s %s is cluster-wide and %s %s; destroy or move those domains first; nothing changed", kind, name, use, strings.Join(users, ", "))
	}
	if err == nil {
		err = s.cluster.Undeclare(ctx, kind, name)
	}
	if err != nil {
		return err
	}
	return del()
}

// clusterUsers are the domains (NAME on HOST) of every host, this one's
// as it has them now, whose spec uses says.
func (s *Server) clusterUsers(ctx context.Context, uses func(api.DomainSpec) bool) ([]string, error) {
	recs, err := s.cluster.Domains(ctx)
	if err != nil {
		return nil, err
	}
	me := s.cluster.Name()
	var out []string
	for _, d := range s.mgr.List(true) {
		if uses(d.Spec) {
			out = append(out, d.Spec.Name+" on "+me)
		}
	}
	for _, r := range recs {
		if r.Host != me && uses(r.Domain.Spec) {
			out = append(out, r.Domain.Spec.Name+" on "+r.Host)
		}
	}
	sort.Strings(out)
	return out, nil
}

// syncDeclared makes this host's cluster-wide networks and pools match
// the declarations: a missing one made, one no longer declared deleted
// (a local failure is logged and retried at the next sync).
func (s *Server) syncDeclared(ctx context.Context) {
	s.declMu.Lock()
	defer s.declMu.Unlock()
	nets := map[string]bool{}
	for _, n := range s.nets.List() {
		nets[n.Name] = n.Cluster
	}
	s.syncKind(ctx, cluster.KindNetwork, nets, func(b []byte) error {
		var n api.Network
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
		_, err := s.nets.Create(ctx, n)
		return err
	}, func(name string) error { return s.nets.Delete(ctx, name) })
	local, err := s.pools.List(ctx)
	if err != nil {
		return
	}
	pools := map[string]bool{}
	for _, p := range local {
		pools[p.Name] = p.Cluster
	}
	s.syncKind(ctx, cluster.KindPool, pools, func(b []byte) error {
		var p api.Pool
		if err := json.Unmarshal(b, &p); err != nil {
			return err
		}
		_, err := s.pools.Create(ctx, p)
		return err
	}, func(name string) error { return s.pools.Delete(ctx, name) })
}

// syncKind syncs one kind: have is this host's, by name (true: made
// from a declaration).
func (s *Server) syncKind(ctx context.Context, kind string, have map[string]bool, makeOne func([]byte) error, remove func(string) error) {
	decl, err := s.cluster.Declared(ctx, kind)
	if err != nil {
		return
	}
	for name, fromDecl := range have {
		if _, ok := decl[name]; fromDecl && !ok {
			s.logSync("deleting", kind, name, remove(name))
		}
	}
	for name, b := range decl {
		if _, ok := have[name]; !ok {
			s.logSync("making", kind, name, makeOne(b))
		}
	}
}

// logSync logs one step of syncDeclared (a failure at debug level: it is
// retried every sync; `network list` on the host shows what it lacks).
func (s *Server) logSync(what, kind, name string, err error) {
	if err != nil {
		s.log.Debug(fmt.Sprintf("cluster: %s the cluster-wide %s here failed; retried at the next sync", what, kind), "name", name, "err", err)
		return
	}
	s.log.Info(fmt.Sprintf("cluster: %s the cluster-wide %s here: done", what, kind), "name", name)
}
