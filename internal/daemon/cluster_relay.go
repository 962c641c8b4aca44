package daemon

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
)

// Streams on a domain another host has (its console, its VNC display,
// an export or a save image streamed to the caller) are relayed whole:
// the request goes, as HTTP, over a raw connection to the owner's peer
// listener (POST /peer/relay, upgraded: mutual TLS, the peer list,
// permission peer.forward), where the owner serves it through its own
// route table and guard for the caller's role, as a forwarded call. An
// upgrade (the console's and VNC's streams, raw or WebSocket) passes
// through both ways; a download streams as it is made.

// relayed are the routes whose answer is a stream (relayed, never
// buffered as a forwarded call's reply is).
func relayed(path string) bool {
	for _, s := range []string{"/console", "/vnc", "/export/archive", "/save/image"} {
		if strings.HasSuffix(path, s) {
			return true
		}
	}
	return false
}

const relayProto = "ringfence-relay"

// relayTo sends the request to owner over a relay connection and the
// answer back to the caller, as it comes.
func (s *Server) relayTo(w http.ResponseWriter, r *http.Request, owner string, p auth.Principal) {
	addr, err := s.cluster.PeerAddr(r.Context(), owner)
	if err != nil {
		reply(w, nil, err)
		return
	}
	host, _, _ := net.SplitHostPort(addr)
	cfg, err := s.trust.ClientConfig(host)
	if err != nil {
		reply(w, nil, err)
		return
	}
	q := url.Values{"role": {string(p.Role)}, "caller": {p.String()}}
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialUpgrade(ctx, addr, cfg, "/peer/relay?"+q.Encode(), relayProto)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", addr
			pr.Out.Header.Del("Authorization") // the owner trusts the relay, not the caller's token
		},
		Transport:     &http.Transport{DialContext: dial, DisableKeepAlives: true},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			reply(w, nil, api.Errorf(api.ErrUnavailable, "relaying to host %q (%s), which has the domain: %v; or call that host", owner, addr, err))
		},
	}
	proxy.ServeHTTP(w, r)
}

// relayIn is the owner's side: the connection, once upgraded, carries
// one HTTP request of a domain route, served as the peer's forwarded
// call for the caller's role.
func (s *Server) relayIn(w http.ResponseWriter, r *http.Request) {
	role, caller := auth.Role(r.URL.Query().Get("role")), r.URL.Query().Get("caller")
	if !forwardRoles[role] {
		reply(w, nil, api.Errorf(api.ErrForbidden, "a stream for a %q is not relayed", role))
		return
	}
	peer := principalOf(r.Context())
	p := auth.Principal{Kind: auth.Peer, Name: peer.Name + " for " + caller, Role: role, Remote: peer.Remote}
	conn, rw, ok := upgrade(w, relayProto)
	if !ok {
		return
	}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, api.Version+"/domains/") || !relayed(r.URL.Path) {
			reply(w, nil, api.Errorf(api.ErrForbidden, "%s %s is not relayed", r.Method, r.URL.Path))
			return
		}
		s.forwardMux.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: inner, ReadHeaderTimeout: streamIdle, ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(withPrincipal(ctx, p), forwardedKey{}, true)
	}}
	// One request on this connection; Serve returns once it is taken,
	// and the request is served on until it ends.
	srv.Serve(&oneConn{c: &rwConn{Conn: conn, r: rw.Reader}})
}

// oneConn is a listener that hands out one connection.
type oneConn struct {
	mu sync.Mutex
	c  net.Conn
}

func (l *oneConn) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == nil {
		return nil, errors.New("relay: one connection only")
	}
	c := l.c
	l.c = nil
	return c, nil
}

func (l *oneConn) Close() error   { return nil }
func (l *oneConn) Addr() net.Addr { return &net.TCPAddr{} }
