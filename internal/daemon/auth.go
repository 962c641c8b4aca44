package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/names"
)

// Listeners' callers: root on the unix socket is the host's admin; the
// peer listener has peer hosts (a certificate from our CA on the peer
// list) and anonymous joiners.
var (
	socketRoles = []auth.Role{auth.Admin}
	peerRoles   = []auth.Role{auth.PeerHost, auth.Joiner}
)

func withPrincipal(ctx context.Context, p auth.Principal) context.Context {
	return auth.NewContext(ctx, p)
}

// principalOf is who is behind a request.
func principalOf(ctx context.Context) auth.Principal { return auth.FromContext(ctx) }

// adminConn tags connections of the unix socket (mode 0600: root).
func adminConn(ctx context.Context, c net.Conn) context.Context {
	return withPrincipal(ctx, auth.Principal{Kind: auth.Local, Name: "root", Role: auth.Admin, Remote: "unix"})
}

// peerConn tags connections of the peer listener by their certificate:
// the listener completed the handshake (and checked the peer list), so a
// verified chain means a peer host, none means an anonymous joiner.
func peerConn(ctx context.Context, c net.Conn) context.Context {
	p := auth.Principal{Kind: auth.Anonymous, Role: auth.Joiner, Remote: c.RemoteAddr().String()}
	if tc, ok := c.(*tls.Conn); ok {
		if st := tc.ConnectionState(); len(st.VerifiedChains) > 0 {
			p.Kind, p.Role, p.Name = auth.Peer, auth.PeerHost, st.PeerCertificates[0].Subject.CommonName
		}
	}
	return withPrincipal(ctx, p)
}

// maxBody is the largest request body any route takes (JSON only).
const maxBody = 4 << 20

// guard is the one gate in front of every route: the caller must hold
// the route's permission, every name in the path must follow the name
// rule and name something the caller may see (a tenant's principal:
// its tenant's; see visible), and the body is capped (but for an
// archive's upload).
func (s *Server) guard(rt route) http.HandlerFunc {
	params := rt.params()
	return func(w http.ResponseWriter, r *http.Request) {
		p := principalOf(r.Context())
		if !p.Can(rt.perm) {
			reply(w, nil, api.Errorf(api.ErrForbidden, "%s %s needs permission %s, which %s does not have", rt.method, api.Version+rt.path, rt.perm, p))
			return
		}
		for _, p := range params {
			v := r.PathValue(p)
			var err error
			if check, ok := paramChecks[p]; ok {
				err = check(v)
			} else {
				err = names.Check(paramKinds[p], v)
			}
			if err != nil {
				reply(w, nil, api.Errorf(api.ErrInvalid, "%v", err))
				return
			}
		}
		if err := s.visible(r, p, params); err != nil {
			reply(w, nil, err)
			return
		}
		if !uploads[rt.method+" "+rt.path] {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		if s.forwardIfRemote(w, r, rt) {
			return
		}
		rt.h(w, r)
	}
}

// paramKinds names what each path parameter is, for error messages.
var paramKinds = map[string]string{
	"name": "domain", "pool": "pool", "vol": "volume", "snap": "snapshot",
	"network": "network", "peer": "host", "apitoken": "token", "tenant": "tenant",
}

// paramChecks are the path parameters that are not names: each its own
// rule.
var paramChecks = map[string]func(string) error{"token": checkToken, "op": checkOpID}

// checkToken is the rule for migration data tokens (hex from the
// destination).
func checkToken(s string) error {
	if len(s) == 0 || len(s) > 128 || strings.Trim(s, "0123456789abcdef.nbd") != "" {
		return fmt.Errorf("%q is not a migration token", s)
	}
	return nil
}

// canonical refuses a request whose path is not canonical instead of
// letting the router redirect it (a 307 keeps the method and body, so
// `destroy ../domains/g1` once destroyed g1).
func canonical(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "" || p[0] != '/' || path.Clean(p) != p && path.Clean(p)+"/" != p || strings.Contains(p, "//") {
			reply(w, nil, api.Errorf(api.ErrInvalid, "path %q is not canonical (no '.', '..' or empty segments); escape names as URL path segments", p))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// forbidden answers every request the peer listener does not serve.
func forbidden(w http.ResponseWriter, r *http.Request) {
	reply(w, nil, api.Errorf(api.ErrForbidden, "%s %s is not served on the peer listener: peers may only migrate domains here", r.Method, r.URL.Path))
}

var errNoPeerTLS = errors.New("this host has no peer certificate")
