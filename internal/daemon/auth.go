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
	"github.com/ringfence/ringfence/internal/names"
)

// Caller is who is calling a route: a bit set, so a route's rule is the
// set of callers it admits.
type Caller uint8

const (
	// Admin is root on this host, over the unix socket (mode 0600).
	Admin Caller = 1 << iota
	// Peer is another host holding a certificate from our CA that is on
	// this host's peer list, over the mutual-TLS peer listener.
	Peer
	// Anonymous is anyone who reaches the peer listener without a
	// certificate: a host joining with a single-use token.
	Anonymous
)

func (c Caller) String() string {
	var out []string
	for _, x := range []struct {
		c Caller
		n string
	}{{Admin, "admin"}, {Peer, "peer host"}, {Anonymous, "anonymous"}} {
		if c&x.c != 0 {
			out = append(out, x.n)
		}
	}
	if len(out) == 0 {
		return "nobody"
	}
	return strings.Join(out, "|")
}

// identity is the caller of one connection, set when it is accepted.
type identity struct {
	who    Caller
	name   string // the peer host's certificate name
	remote string
}

type ctxKey struct{}

func withIdentity(ctx context.Context, id identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

func identityOf(ctx context.Context) identity {
	id, _ := ctx.Value(ctxKey{}).(identity)
	return id
}

// adminConn tags connections of the unix socket.
func adminConn(ctx context.Context, c net.Conn) context.Context {
	return withIdentity(ctx, identity{who: Admin, remote: "unix"})
}

// peerConn tags connections of the peer listener by their certificate:
// the listener completed the handshake (and checked the peer list), so a
// verified chain means a peer host, none means an anonymous joiner.
func peerConn(ctx context.Context, c net.Conn) context.Context {
	id := identity{who: Anonymous, remote: c.RemoteAddr().String()}
	if tc, ok := c.(*tls.Conn); ok {
		if st := tc.ConnectionState(); len(st.VerifiedChains) > 0 {
			id.who, id.name = Peer, st.PeerCertificates[0].Subject.CommonName
		}
	}
	return withIdentity(ctx, id)
}

// maxBody is the largest request body any route takes (JSON only).
const maxBody = 4 << 20

// guard is the one gate in front of every route: the caller must be one
// the route admits, every name in the path must follow the name rule, and
// the body is capped.
func guard(rt route) http.HandlerFunc {
	params := rt.params()
	return func(w http.ResponseWriter, r *http.Request) {
		id := identityOf(r.Context())
		if rt.who&id.who == 0 {
			reply(w, nil, api.Errorf(api.ErrForbidden, "%s %s is not allowed to %s (it is for: %s)", rt.method, api.Version+rt.path, id.who, rt.who))
			return
		}
		for _, p := range params {
			v := r.PathValue(p)
			var err error
			if p == "token" {
				err = checkToken(v)
			} else {
				err = names.Check(paramKinds[p], v)
			}
			if err != nil {
				reply(w, nil, api.Errorf(api.ErrInvalid, "%v", err))
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		rt.h(w, r)
	}
}

// paramKinds names what each path parameter is, for error messages.
var paramKinds = map[string]string{
	"name": "domain", "pool": "pool", "vol": "volume", "snap": "snapshot",
	"network": "network", "peer": "host",
}

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
