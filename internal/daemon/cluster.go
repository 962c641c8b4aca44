package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/cluster"
	"github.com/ringfence/ringfence/internal/etcdmember"
	"github.com/ringfence/ringfence/internal/peer"
)

// openCluster resumes this host's cluster membership, if it has one (its
// etcd member and host record start in the background).
func (b *startup) openCluster() error {
	f := peer.Files{Dir: filepath.Join(b.cfg.StateDir, "tls")}
	ctx, cancel := context.WithCancel(context.Background())
	b.later(cancel)
	// The renewals feed HA's fence deadline.
	b.s.ha = b.s.newHA()
	c, err := cluster.Open(cluster.Config{Dir: filepath.Join(b.cfg.StateDir, "cluster"),
		ID: etcdmember.Identity{CertKey: f.Cert(), CA: f.CA()}, Endpoints: b.cfg.EtcdEndpoints, Log: b.log,
		Renewed: b.s.ha.fencer.Renewed})
	if err != nil {
		return err
	}
	b.s.cluster = c
	b.s.ha.start(ctx)
	b.later(c.Close)
	b.s.forwardMux = b.s.handler([]auth.Role{auth.Admin, auth.Operator, auth.Auditor}, nil)
	go b.s.publishDomains(ctx)
	return nil
}

// publishEvery is how often this host's domains are published to the
// cluster (a change shows in every host's list within it).
const publishEvery = 2 * time.Second

// publishDomains keeps the cluster's records of this host's domains
// current while the host is in a cluster.
func (s *Server) publishDomains(ctx context.Context) {
	warned := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(publishEvery):
		}
		if !s.cluster.In() {
			continue
		}
		s.syncDeclared(ctx)
		clashes, err := s.publishNow(ctx)
		if err == nil {
			err = s.cluster.PublishRoom(ctx, s.ledger.Snapshot())
		}
		if err == nil {
			err = s.publishImages(ctx)
		}
		if err != nil {
			s.log.Debug("cluster: publishing this host's domains", "err", err)
		}
		for _, n := range clashes {
			if !warned[n] {
				warned[n] = true
				s.log.Warn("cluster: another host has a domain of the same name; this one is not published (rename one of them)", "name", n)
			}
		}
	}
}

// publishNow publishes this host's domains to the cluster (the names
// another host has come back).
func (s *Server) publishNow(ctx context.Context) ([]string, error) {
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	return s.cluster.Publish(ctx, s.mgr.List(true))
}

// clusterList is `list` on a host in a cluster: its own domains and
// every other host's, each with its host.
func (s *Server) clusterList(ctx context.Context, local []api.Domain) []api.Domain {
	if !s.cluster.In() {
		return local
	}
	me := s.trust.Status().Name
	seen := map[string]bool{}
	for i := range local {
		local[i].Host = me
		seen[local[i].Spec.Name] = true
	}
	recs, err := s.cluster.Domains(ctx)
	if err != nil {
		s.log.Warn("cluster: listing the other hosts' domains", "err", err)
		return local
	}
	for _, r := range recs {
		if r.Host != me && !seen[r.Domain.Spec.Name] {
			d := r.Domain
			d.Host = r.Host
			local = append(local, d)
		}
	}
	return local
}

// clusterRoutes: the admin's cluster verbs (init, join, status, leave).
func (s *Server) clusterRoutes() []route {
	return []route{
		{"POST", "/cluster/init", auth.HostManage, handle(func(r *http.Request, req api.ClusterInitRequest) (any, error) {
			return s.clusterInit(r.Context(), req)
		})},
		{"POST", "/cluster/join", auth.HostManage, handle(func(r *http.Request, req api.ClusterJoinRequest) (any, error) {
			return s.clusterJoin(r.Context(), req)
		})},
		{"GET", "/cluster", auth.HostRead, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.cluster.Status(r.Context())
			if err == nil && s.ha != nil {
				out.HA = s.ha.status()
			}
			reply(w, out, err)
		}},
		{"POST", "/peer/forward", auth.PeerForward, s.forwarded},
		{"POST", "/cluster/hosts/{peer}/evacuate", auth.HostManage, s.evacuate},
		{"POST", "/cluster/hosts/{peer}/resume", auth.HostManage, handle(func(r *http.Request, _ struct{}) (any, error) {
			if !s.cluster.In() {
				return nil, api.Errorf(api.ErrInvalid, "this host is in no cluster")
			}
			if err := s.cluster.SetExcluded(r.Context(), r.PathValue("peer"), false); err != nil {
				return nil, err
			}
			return s.cluster.Status(r.Context())
		})},
	}
}

// clusterInit makes this host the first of a cluster, its trust authority
// first if it has no trust yet.
func (s *Server) clusterInit(ctx context.Context, req api.ClusterInitRequest) (api.ClusterStatus, error) {
	if s.cluster.In() {
		return s.cluster.Init(ctx, cluster.Me{}) // refused, saying where it is
	}
	if s.trust.Status() == nil {
		if err := s.trust.Init(req.PeerName, req.Names, false, ""); err != nil {
			return api.ClusterStatus{}, err
		}
	}
	st := s.trust.Status()
	if st.Role != string(peer.RoleAuthority) {
		return api.ClusterStatus{}, api.Errorf(api.ErrConflict, "this host is a %s of %s's trust, not its authority: run `ringfence cluster join` here, `cluster init` on the authority", st.Role, st.Authority)
	}
	addr, err := cluster.AddrOf(st.Names)
	if err != nil {
		return api.ClusterStatus{}, err
	}
	return s.cluster.Init(ctx, cluster.Me{Name: st.Name, Addr: addr, PeerAddr: s.peerAddr(addr)})
}

// clusterJoin joins the cluster of this host's authority: with a token
// the host is made a member of its trust first (`host join`); a host
// trusted already joins without one.
func (s *Server) clusterJoin(ctx context.Context, req api.ClusterJoinRequest) (api.ClusterStatus, error) {
	if s.cluster.In() {
		return s.cluster.Join(ctx, cluster.Me{}, "", false) // refused, saying where it is
	}
	st := s.trust.Status()
	switch {
	case req.Token != "" && st != nil:
		return api.ClusterStatus{}, api.Errorf(api.ErrConflict, "this host is already trusted as %q (%s): run `ringfence cluster join` without a token", st.Name, st.Role)
	case req.Token == "" && st == nil:
		return api.ClusterStatus{}, api.Errorf(api.ErrInvalid, "this host is not trusted yet: give the join token `ringfence host token --peer-name NAME` printed on the cluster's first host")
	case req.Token != "":
		if err := s.trust.JoinWith(ctx, req.Token, req.PeerName, req.Names); err != nil {
			return api.ClusterStatus{}, err
		}
		st = s.trust.Status()
	}
	if st.Role != string(peer.RoleMember) {
		return api.ClusterStatus{}, api.Errorf(api.ErrConflict, "this host is the %s of its trust: `ringfence cluster init` makes it the cluster's first host", st.Role)
	}
	addr, err := cluster.AddrOf(st.Names)
	if err != nil {
		return api.ClusterStatus{}, err
	}
	seed, _, err := net.SplitHostPort(s.trust.AuthorityAddr())
	if err != nil {
		return api.ClusterStatus{}, fmt.Errorf("the authority's address %q: %w", s.trust.AuthorityAddr(), err)
	}
	out, err := s.cluster.Join(ctx, cluster.Me{Name: st.Name, Addr: addr, PeerAddr: s.peerAddr(addr)}, seed, req.Witness)
	if err != nil && req.Token != "" {
		return out, fmt.Errorf("%w (this host is now trusted by %s: once that is fixed, run `ringfence cluster join` again, with no token)", err, st.Authority)
	}
	return out, err
}

// peerAddr is this host's peer listener at addr ("" without --listen).
func (s *Server) peerAddr(addr string) string {
	_, port, err := net.SplitHostPort(s.cfg.Listen)
	if err != nil {
		return ""
	}
	return net.JoinHostPort(addr, port)
}
