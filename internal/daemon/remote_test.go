package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/peer"
	"github.com/ringfence/ringfence/internal/store/memstore"
	"github.com/ringfence/ringfence/internal/tokens"
)

func remoteServer(t *testing.T) (*Server, map[string]string) {
	t.Helper()
	s := &Server{tokens: tokens.New(memstore.New()), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	secrets := map[string]string{}
	for _, r := range []string{"admin", "auditor"} {
		tok, err := s.tokens.Create(context.Background(), api.APITokenRequest{Name: r, Role: r})
		if err != nil {
			t.Fatal(err)
		}
		secrets[r] = tok.Secret
	}
	if _, err := s.tokens.Revoke(context.Background(), "auditor"); err != nil {
		t.Fatal(err)
	}
	tok, _ := s.tokens.Create(context.Background(), api.APITokenRequest{Name: "aud2", Role: "auditor"})
	secrets["aud2"] = tok.Secret
	tok, _ = s.tokens.Create(context.Background(), api.APITokenRequest{Name: "tu", Role: "tenant-user", Tenant: "acme"})
	secrets["tu"] = tok.Secret
	return s, secrets
}

// TestRemoteAuth: the API listener's gate refuses every request without a
// live token with one 401 before routing, and a token's role decides.
func TestRemoteAuth(t *testing.T) {
	s, sec := remoteServer(t)
	h := s.remoteAuth(s.handler(auth.UserRoles(), nil))
	cases := []struct {
		what, method, path string
		authz              []string
		code               int
		msg                string
	}{
		{"no token", "GET", "/1.0/tokens", nil, 401, "needs a token"},
		{"no token, unknown route", "GET", "/1.0/nothing", nil, 401, "needs a token"},
		{"garbled", "GET", "/1.0/tokens", []string{"Bearer rf_admin_garbage"}, 401, "invalid API token"},
		{"wrong scheme", "GET", "/1.0/tokens", []string{"Basic " + sec["admin"]}, 401, "want Bearer"},
		{"two headers", "GET", "/1.0/tokens", []string{"Bearer " + sec["admin"], "Bearer " + sec["admin"]}, 401, "more than one"},
		{"oversized", "GET", "/1.0/tokens", []string{"Bearer " + strings.Repeat("a", 4096)}, 401, "over 512 bytes"},
		{"revoked", "GET", "/1.0/tokens", []string{"Bearer " + sec["auditor"]}, 401, "revoked"},
		{"wrong role", "GET", "/1.0/tokens", []string{"Bearer " + sec["aud2"]}, 403, "needs permission token.manage"},
		{"tenant role, host route", "GET", "/1.0/tokens", []string{"Bearer " + sec["tu"]}, 403, "needs permission token.manage"},
		{"tenant role, not its domain", "GET", "/1.0/domains/g1", []string{"Bearer " + sec["tu"]}, 404, `no domain named \"g1\"`},
		{"admin", "GET", "/1.0/tokens", []string{"Bearer " + sec["admin"]}, 200, `"name":"admin"`},
		{"peer route", "POST", "/1.0/migrate/incoming", []string{"Bearer " + sec["admin"]}, 404, ""},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, c.path, nil)
		r.Header["Authorization"] = c.authz
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.code || !strings.Contains(w.Body.String(), c.msg) {
			t.Errorf("%s: %d %s, want %d with %q", c.what, w.Code, w.Body.String(), c.code, c.msg)
		}
		if c.code == 401 && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", c.what)
		}
	}
	// The peer listener refuses a token, whatever the route.
	p := refuseTokens(s.handler(peerRoles, forbidden))
	r := httptest.NewRequest("GET", "/1.0/domains", nil)
	r.Header.Set("Authorization", "Bearer "+sec["admin"])
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	if w.Code != 401 || !strings.Contains(w.Body.String(), "not accepted on the peer listener") {
		t.Errorf("a token on the peer listener: %d %s", w.Code, w.Body.String())
	}
}

// TestAPICertificate: made once (0600, P-256, the listen IP), kept after,
// and served over TLS 1.3 only.
func TestAPICertificate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "api")
	c1, err := apiCertificate(dir, "127.0.0.1:8443")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cert.pem", "key.pem"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st.Mode(), err)
		}
	}
	if k, ok := c1.Leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Fatalf("key %T, want ECDSA P-256", c1.Leaf.PublicKey)
	}
	if len(c1.Leaf.IPAddresses) != 1 || !c1.Leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("IP SANs %v", c1.Leaf.IPAddresses)
	}
	c2, err := apiCertificate(dir, "127.0.0.1:8443")
	if err != nil || peer.Fingerprint(c2.Leaf.Raw) != peer.Fingerprint(c1.Leaf.Raw) {
		t.Fatal("the certificate was not kept")
	}
	s, sec := remoteServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{c1}, ClientAuth: tls.RequestClientCert})
	srv := &http.Server{Handler: s.remoteAuth(s.handler(auth.UserRoles(), nil))}
	go srv.Serve(tl)
	defer srv.Close()
	old := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}
	if c, err := tls.Dial("tcp", ln.Addr().String(), old); err == nil {
		c.Close()
		t.Fatal("a TLS 1.2 handshake succeeded")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, _ := http.NewRequest("GET", "https://"+ln.Addr().String()+"/1.0/tokens", nil)
	req.Header.Set("Authorization", "Bearer "+sec["admin"])
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []api.APIToken
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list) != 4 {
		t.Fatalf("%d %v %v", resp.StatusCode, list, err)
	}
	clientCertRoundTrip(t, s, ln.Addr().String())
}

// clientCertRoundTrip: a client certificate bound to the admin token is
// the admin; an unbound one gets 401.
func clientCertRoundTrip(t *testing.T, s *Server, addr string) {
	t.Helper()
	bound, err := apiCertificate(filepath.Join(t.TempDir(), "c1"), "")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := apiCertificate(filepath.Join(t.TempDir(), "c2"), "")
	if _, err := s.tokens.BindCert(context.Background(), "admin", bound.Leaf.Raw); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cert tls.Certificate
		code int
	}{{bound, 200}, {other, 401}} {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{c.cert}}}}
		resp, err := hc.Get("https://" + addr + "/1.0/tokens")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("client certificate: %d %s, want %d", resp.StatusCode, b, c.code)
		}
	}
}
