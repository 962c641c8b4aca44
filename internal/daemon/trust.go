package daemon

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/peer"
)

// trustRoutes: the admin's verbs on this host's trust (host trust, token,
// join, renew, peers, revoke) and what peers call on each other: a join
// (anonymous, token in hand), a renewal and the peer list (peer hosts).
func (s *Server) trustRoutes() []route {
	return []route{
		{"POST", "/host/trust", auth.HostManage, handle(func(r *http.Request, req api.TrustRequest) (any, error) {
			if err := s.trust.Init(req.PeerName, req.Names, req.Offline, req.CAFrom); err != nil {
				return nil, err
			}
			return s.trust.Status(), nil
		})},
		{"POST", "/host/tokens", auth.HostManage, handle(func(r *http.Request, req api.TokenRequest) (any, error) {
			return s.trust.NewToken(req.PeerName, time.Duration(req.TTLSec)*time.Second, req.Addr)
		})},
		{"POST", "/host/join", auth.HostManage, handle(func(r *http.Request, req api.JoinRequest) (any, error) {
			if err := s.trust.JoinWith(r.Context(), req.Token, req.PeerName, req.Names); err != nil {
				return nil, err
			}
			return s.trust.Status(), nil
		})},
		{"POST", "/host/renew", auth.HostManage, handle(func(r *http.Request, _ struct{}) (any, error) {
			old := s.trust.Status()
			if err := s.trust.Renew(r.Context()); err != nil {
				return nil, err
			}
			// The old certificate goes on the cluster's revocation list:
			// etcd checks only the CA, and a renewal is often made because
			// a key may have leaked.
			if old != nil && s.cluster != nil {
				if err := s.cluster.Supersede(r.Context(), old.Serial, old.NotAfter); err != nil {
					return nil, fmt.Errorf("the certificate was renewed, but recording the old one (serial %s) for the cluster's revocation list failed: %w; fix that and run `ringfence host renew` again", old.Serial, err)
				}
			}
			return s.trust.Status(), nil
		})},
		{"GET", "/host/peers", auth.HostRead, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.trust.Peers()
			reply(w, out, err)
		}},
		{"POST", "/host/peers/{peer}/revoke", auth.HostManage, handle(func(r *http.Request, _ struct{}) (any, error) {
			if err := s.revokePeer(r.Context(), r.PathValue("peer")); err != nil {
				return nil, err
			}
			return s.trust.Peers()
		})},

		{"POST", "/peer/join", auth.PeerJoin, handle(func(r *http.Request, call peer.JoinCall) (any, error) {
			return s.trust.Admit(r.Context(), call, principalOf(r.Context()).Remote)
		})},
		{"POST", "/peer/renew", auth.PeerSync, handle(func(r *http.Request, call peer.RenewCall) (any, error) {
			if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
				return nil, api.Errorf(api.ErrForbidden, "a renewal needs the host's current certificate")
			}
			return s.trust.RenewFor(r.TLS.PeerCertificates[0], call)
		})},
		{"GET", "/peer/list", auth.PeerSync, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.trust.Signed()
			reply(w, out, err)
		}},
		{"PUT", "/peer/list", auth.PeerSync, handle(func(r *http.Request, sl peer.Signed) (any, error) {
			return struct{}{}, s.trust.Accept(sl)
		})},
	}
}

// peerTLS is the TLS to dial the peer at target (HOST:PORT).
func (s *Server) peerTLS(host string) (*tls.Config, error) { return s.trust.ClientConfig(host) }
