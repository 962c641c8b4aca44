package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/peer"
	"github.com/ringfence/ringfence/internal/selfsign"
	"github.com/ringfence/ringfence/internal/tenants"
	"github.com/ringfence/ringfence/internal/tokens"
	"github.com/ringfence/ringfence/internal/webui"
)

// The remote API listener (serve --api-listen) serves the same /1.0 API
// as the unix socket over TLS 1.3, to callers who prove who they are with
// an API token (Authorization: Bearer rf_NAME_SECRET) or a client
// certificate bound to one (internal/tokens/certs.go). It registers only
// the routes some user role may call: never a peer host's.

// maxAuthHeader is the longest Authorization header looked at; a longer
// one is refused before any lookup.
const maxAuthHeader = 512

// tokenRoutes: the remote API's tokens (made, listed, revoked).
func (s *Server) tokenRoutes() []route {
	return []route{
		{"POST", "/tokens", auth.TokenManage, handle(func(r *http.Request, req api.APITokenRequest) (any, error) {
			out, err := s.tokens.Create(r.Context(), req)
			if err == nil {
				s.log.Info("API token created", "token", req.Name, "role", req.Role, "tenant", req.Tenant, "by", principalOf(r.Context()).String())
			}
			return out, err
		})},
		{"GET", "/tokens", auth.TokenManage, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.tokens.List(r.Context())
			reply(w, out, err)
		}},
		{"POST", "/tokens/certificates", auth.CredentialBind, handle(func(r *http.Request, req api.APICertRequest) (any, error) {
			p := principalOf(r.Context())
			if p.Kind != auth.Token && p.Kind != auth.Cert {
				return nil, api.Errorf(api.ErrInvalid, "a client certificate is bound to the token that asks: call this over the API listener with a token")
			}
			blk, _ := pem.Decode([]byte(req.Certificate))
			if blk == nil || blk.Type != "CERTIFICATE" {
				return nil, api.Errorf(api.ErrInvalid, "certificate: want one PEM CERTIFICATE block")
			}
			fp, err := s.tokens.BindCert(r.Context(), p.Name, blk.Bytes)
			if err == nil {
				s.log.Info("client certificate bound to an API token", "token", p.Name, "fingerprint", fp)
			}
			return map[string]string{"fingerprint": fp}, err
		})},
		{"DELETE", "/tokens/{apitoken}", auth.TokenManage, handle(func(r *http.Request, _ struct{}) (any, error) {
			out, err := s.tokens.Revoke(r.Context(), r.PathValue("apitoken"))
			if err == nil {
				s.log.Info("API token revoked", "token", out.Name, "by", principalOf(r.Context()).String())
			}
			return out, err
		})},
	}
}

// listenRemote opens the token store and, with --api-listen, serves the
// API over TLS 1.3 to token holders.
func (b *startup) listenRemote() error {
	s, log := b.s, b.log
	s.tokens = tokens.New(b.st)
	s.tokens.TenantKey = tenants.Key
	if b.cfg.APIListen == "" {
		return nil
	}
	cert, err := apiCertificate(filepath.Join(b.cfg.StateDir, "api"), b.cfg.APIListen)
	if err != nil {
		return fmt.Errorf("the API listener's certificate: %w", err)
	}
	raw, err := net.Listen("tcp", b.cfg.APIListen)
	if err != nil {
		return fmt.Errorf("API listener %s: %w", b.cfg.APIListen, err)
	}
	gl := newGuardedListener(raw, "remote-api", maxConns, maxConnsPerSource, log)
	tl := tls.NewListener(gl, &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// Any certificate is asked for (the handshake proves its key);
		// it is a principal only if bound to a live token.
		ClientAuth: tls.RequestClientCert,
		NextProtos: []string{"http/1.1"}, // the console is an HTTP/1.1 upgrade
	})
	srv := s.server(s.remoteHandler(), remoteConn)
	if err := s.web.Sweep(b.ctx); err != nil {
		log.Warn("dropping the web admin's expired sessions", "err", err)
	}
	go srv.Serve(tl)
	b.later(func() { srv.Close() })
	log.Info("remote API listener (TLS 1.3, API tokens)", "addr", tl.Addr().String(), "fingerprint", peer.Fingerprint(cert.Leaf.Raw))
	return nil
}

// remoteHandler is the API listener's: the API behind its gate, and the
// web admin's pages under /ui/ (themselves a client of the API: a session
// cookie is one more credential the gate accepts).
func (s *Server) remoteHandler() http.Handler {
	s.web = webui.NewSessions(s.tokens, s.st)
	mux := http.NewServeMux()
	mux.Handle(webui.Prefix, webui.Handler(s.web))
	mux.Handle("GET /{$}", http.RedirectHandler(webui.Prefix, http.StatusSeeOther))
	mux.Handle("/", s.remoteAuth(s.handler(auth.UserRoles(), nil)))
	return mux
}

// remoteConn tags a connection of the API listener with no role: a
// request has one only once remoteAuth has checked its token.
func remoteConn(ctx context.Context, c net.Conn) context.Context {
	return withPrincipal(ctx, auth.Principal{Kind: auth.Anonymous, Remote: c.RemoteAddr().String()})
}

// remoteAuth is the API listener's gate: a request without a valid token
// gets 401 and one message, before routing (so an unknown caller learns
// nothing of the routes); with one, it carries the token's principal.
func (s *Server) remoteAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.bearer(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ringfence"`)
			reply(w, nil, err)
			return
		}
		// A tenant role's principal passes too: the routes' gate
		// (visible) shows it only its tenant's objects.
		next.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), p)))
	})
}

// bearer is the principal of a request's token.
func (s *Server) bearer(r *http.Request) (auth.Principal, error) {
	h := r.Header.Values("Authorization")
	if tok, ok := wsToken(r); ok && len(h) == 0 {
		h = []string{"Bearer " + tok} // a browser's WebSocket (console.go)
	}
	if len(h) == 0 && s.web != nil {
		// A browser's session: the cookie stands for the token it
		// signed in with (and a write must bring the page's CSRF token).
		if p, ok, err := s.web.Authenticate(r); ok {
			return p, err
		}
	}
	switch {
	case len(h) == 0 && r.TLS != nil && len(r.TLS.PeerCertificates) > 0:
		return s.tokens.AuthenticateCert(r.Context(), r.TLS.PeerCertificates[0].Raw, r.RemoteAddr)
	case len(h) == 0:
		return auth.Principal{}, api.Errorf(api.ErrUnauthorized, "this API needs a token: Authorization: Bearer TOKEN (`ringfence remote add NAME URL --token TOKEN`)")
	case len(h) > 1:
		return auth.Principal{}, api.Errorf(api.ErrUnauthorized, "more than one Authorization header")
	case len(h[0]) > maxAuthHeader:
		return auth.Principal{}, api.Errorf(api.ErrUnauthorized, "Authorization header over %d bytes", maxAuthHeader)
	}
	scheme, secret, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return auth.Principal{}, api.Errorf(api.ErrUnauthorized, "Authorization: want Bearer TOKEN")
	}
	return s.tokens.Authenticate(r.Context(), strings.TrimSpace(secret), r.RemoteAddr)
}

// refuseTokens keeps API tokens off the peer listener: a request that
// brings one is refused, whatever its route, so a token never works where
// only peer hosts belong.
func refuseTokens(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			reply(w, nil, api.Errorf(api.ErrUnauthorized, "API tokens are not accepted on the peer listener: use the API listener (serve --api-listen)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// apiCertificate loads the API listener's certificate from dir, making
// one on first start: ECDSA P-256, self-signed, for the host's name and
// the listen address's IP; clients pin its fingerprint.
func apiCertificate(dir, listen string) (tls.Certificate, error) {
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
		if err := makeAPICertificate(dir, listen); err != nil {
			return tls.Certificate{}, err
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	return cert, err
}

func makeAPICertificate(dir, listen string) error {
	hn, _ := os.Hostname()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hn, Organization: []string{"ringfence API"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{hn, "localhost"},
	}
	if h, _, err := net.SplitHostPort(listen); err == nil {
		if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() {
			tmpl.IPAddresses = []net.IP{ip}
		}
	}
	return selfsign.Write(tmpl, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
}
