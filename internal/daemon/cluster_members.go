package daemon

import (
	"context"
	"net/http"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/peer"
)

// The cluster keeps three etcd members when it has the hosts: a member
// that leaves or is revoked is replaced by a live client host, which is
// asked over the peer channel to start a member of its own.

// memberRoutes: a host made an etcd member (forwarded to it), the leave
// that hands its vote on, and the relay of a domain's streams.
func (s *Server) memberRoutes() []route {
	return []route{
		{"POST", "/cluster/hosts/{peer}/member", auth.HostManage, s.promote},
		{"POST", "/peer/relay", auth.PeerForward, s.relayIn},
		{"POST", "/cluster/leave", auth.HostManage, handle(func(r *http.Request, _ struct{}) (any, error) {
			return struct{}{}, s.clusterLeave(r.Context())
		})},
	}
}

// promote makes HOST an etcd member: run on HOST itself.
func (s *Server) promote(w http.ResponseWriter, r *http.Request) {
	var req struct{}
	if err := decode(r, &req); err != nil {
		reply(w, nil, err)
		return
	}
	if !s.cluster.In() {
		reply(w, nil, api.Errorf(api.ErrInvalid, "this host is in no cluster"))
		return
	}
	if host := r.PathValue("peer"); host != s.cluster.Name() {
		s.forwardHostVerb(w, r, host, req)
		return
	}
	out, err := s.cluster.Promote(r.Context())
	reply(w, out, err)
}

// clusterLeave is `cluster leave`: a member's vote goes to a live client
// host, if the cluster has one, once this host is out.
func (s *Server) clusterLeave(ctx context.Context) error {
	cand, addr := "", ""
	if s.cluster.In() {
		// (best effort: a cluster that cannot say leaves no candidate)
		cand, addr, _ = s.cluster.Candidate(ctx, s.cluster.Name())
	}
	if err := s.cluster.Leave(ctx); err != nil {
		return err
	}
	if cand != "" {
		s.promoteAt(ctx, cand, addr)
	}
	return nil
}

// revokePeer is `host revoke NAME`. In a cluster the host is taken out
// of it first (its etcd member, records and etcd access), so a failure
// there leaves it on the peer list and the verb can simply be run again;
// then off the peer list; then a client host takes its etcd vote.
func (s *Server) revokePeer(ctx context.Context, name string) error {
	serial, wasMember := s.peerSerial(name), false
	st := s.trust.Status()
	if serial != "" && st != nil && st.Role == string(peer.RoleAuthority) && name != st.Name && s.cluster.In() {
		var err error
		if wasMember, err = s.cluster.Remove(ctx, name, serial); err != nil {
			return err
		}
	}
	if err := s.trust.Revoke(name); err != nil {
		return err
	}
	if wasMember {
		if cand, addr, err := s.cluster.Candidate(ctx, name); err == nil && cand != "" {
			s.promoteAt(ctx, cand, addr)
		}
	}
	return nil
}

// promoteAt asks host (at its peer address) to become an etcd member; a
// failure is logged: the cluster works on with fewer members, and the
// admin can run `cluster leave`/`join` on that host.
func (s *Server) promoteAt(ctx context.Context, host, addr string) {
	call := api.ForwardCall{Method: "POST", Path: "/cluster/hosts/" + host + "/member", Body: []byte("{}"), Role: string(auth.Admin), Caller: principalOf(ctx).String()}
	out, err := s.forwardAt(ctx, host, addr, call)
	if err == nil && out.Status != http.StatusOK {
		err = api.Errorf(api.ErrUnavailable, "%s", out.Body)
	}
	if err != nil {
		s.log.Warn("cluster: a client host could not be made an etcd member", "host", host, "err", err)
		return
	}
	s.log.Info("cluster: a client host made an etcd member", "host", host)
}

// peerSerial is the serial of a peer's current certificate ("" = none).
func (s *Server) peerSerial(name string) string {
	l, _ := s.trust.Peers()
	for _, p := range l.Peers {
		if p.Name == name {
			return p.Serial
		}
	}
	return ""
}
