package peer

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

func newTrust(t *testing.T, dir, listen string) *Trust {
	t.Helper()
	tr, err := Open(Files{Dir: filepath.Join(dir, "tls")}, listen, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func secretOf(t *testing.T, tok string) string {
	b, err := decodeToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	return b.Secret
}

// The authority's rules for tokens, names and revocation, without a
// network: every refusal names its cause and changes nothing.
func TestAuthorityRules(t *testing.T) {
	a := newTrust(t, t.TempDir(), "127.0.0.1:7443")
	if err := a.Init("auth", []string{"127.0.0.1"}, false, ""); err != nil {
		t.Fatal(err)
	}
	if err := a.Init("auth", nil, false, ""); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("second init: %v", err)
	}
	csrFor := func(name string) []byte {
		_, der, err := csr(name, []string{name})
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	tok, err := a.NewToken("", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Addr != "127.0.0.1:7443" || time.Until(tok.Expires) > DefaultTokenTTL {
		t.Fatalf("token %+v", tok)
	}
	ctx := context.Background()
	rep, err := a.Admit(ctx, JoinCall{Secret: secretOf(t, tok.Token), CSR: csrFor("b"), Addr: ":7443"}, "10.0.0.2:5555")
	if err != nil {
		t.Fatal(err)
	}
	l, err := rep.List.Verify(a.ca)
	if err != nil || len(l.Members) != 2 || l.Version != 2 {
		t.Fatalf("list after a join: %+v %v", l, err)
	}
	if m, _ := l.find("b"); m.Addr != "10.0.0.2:7443" {
		t.Fatalf("the joiner's address is %q", m.Addr)
	}
	certB, _ := parsePEMCert(rep.Cert)
	if err := l.Allows(certB); err != nil {
		t.Fatal(err)
	}
	expired, _ := a.NewToken("", time.Minute, "")
	a.tokens[hashSecret(secretOf(t, expired.Token))].Expires = time.Now().Add(-time.Second)
	forD, _ := a.NewToken("d", 0, "")
	anyName, _ := a.NewToken("", 0, "")
	cases := []struct {
		what   string
		secret string
		csr    []byte
		want   string
	}{
		{"reused", secretOf(t, tok.Token), csrFor("c"), `already used by "b"`},
		{"unknown", strings.Repeat("ab", 32), csrFor("c"), "unknown join token"},
		{"expired", secretOf(t, expired.Token), csrFor("c"), "expired at"},
		{"wrong host name", secretOf(t, forD.Token), csrFor("c"), `for host "d", not "c"`},
		{"name clash", secretOf(t, anyName.Token), csrFor("b"), `"b" is already a peer`},
	}
	for _, c := range cases {
		before := a.list.Version
		_, err := a.Admit(ctx, JoinCall{Secret: c.secret, CSR: c.csr}, "10.0.0.3:1")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.what, err, c.want)
		}
		if a.list.Version != before {
			t.Errorf("%s changed the list", c.what)
		}
	}
	if _, err := a.NewToken("b", 0, ""); err == nil || !strings.Contains(err.Error(), "already a peer") {
		t.Errorf("token for an existing peer: %v", err)
	}
	if _, err := a.NewToken("", 2*time.Hour, ""); err == nil {
		t.Error("a two-hour token was made")
	}
	if err := a.Revoke("auth"); err == nil || !strings.Contains(err.Error(), "holds the CA key") {
		t.Errorf("revoking the authority: %v", err)
	}
	if err := a.Revoke("nobody"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("revoking an unknown host: %v", err)
	}
	if err := a.Revoke("b"); err != nil {
		t.Fatal(err)
	}
	if err := a.list.Allows(certB); err == nil {
		t.Fatal("a revoked host is still allowed")
	}
	// A list is the CA's or nothing.
	tampered := a.signed
	tampered.List = []byte(strings.Replace(string(tampered.List), `"auth"`, `"evil"`, 1))
	if _, err := tampered.Verify(a.ca); err == nil {
		t.Fatal("a tampered list verified")
	}
	// The state survives a restart.
	again := newTrust(t, filepath.Dir(a.f.Dir), "")
	if again.role != RoleAuthority || again.list.Version != a.list.Version || len(again.tokens) != len(a.tokens) {
		t.Fatalf("reloaded: role %s list %d tokens %d", again.role, again.list.Version, len(again.tokens))
	}
}

// A managed CA's key is never copied; an offline one may be.
func TestOfflineTrust(t *testing.T) {
	managed := newTrust(t, t.TempDir(), "")
	managed.Init("m", nil, false, "")
	x := newTrust(t, t.TempDir(), "")
	if err := x.Init("x", nil, false, managed.f.Dir); err == nil || !strings.Contains(err.Error(), "managed CA") {
		t.Fatalf("copying a managed CA: %v", err)
	}
	if x.Status() != nil {
		t.Fatal("a refused init left a certificate")
	}
	off := newTrust(t, t.TempDir(), "")
	if err := off.Init("o1", nil, true, ""); err != nil {
		t.Fatal(err)
	}
	if err := x.Init("x", nil, false, off.f.Dir); err != nil {
		t.Fatal(err)
	}
	if st := x.Status(); st.Role != "offline" || !strings.Contains(st.Warning, "offline") {
		t.Fatalf("status %+v", st)
	}
	if _, err := x.NewToken("", 0, "127.0.0.1:1"); err == nil {
		t.Fatal("an offline holder made a join token")
	}
}

// Join over a real TLS listener: the joiner checks the authority against
// the token's fingerprint, gets a certificate for its own key, and both
// sides then accept each other; a stranger's certificate is refused.
func TestJoinOverTLS(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := newTrust(t, t.TempDir(), l.Addr().String())
	if err := a.Init("auth", []string{"127.0.0.1"}, false, ""); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /1.0/peer/join", func(w http.ResponseWriter, r *http.Request) {
		var c JoinCall
		json.NewDecoder(r.Body).Decode(&c)
		rep, err := a.Admit(r.Context(), c, r.RemoteAddr)
		if err != nil {
			w.WriteHeader(403)
			json.NewEncoder(w).Encode(api.ErrorBody{Error: err.Error(), Class: "forbidden"})
			return
		}
		json.NewEncoder(w).Encode(rep)
	})
	mux.HandleFunc("POST /1.0/peer/renew", func(w http.ResponseWriter, r *http.Request) {
		var c RenewCall
		json.NewDecoder(r.Body).Decode(&c)
		rep, err := a.RenewFor(r.TLS.PeerCertificates[0], c)
		if err != nil {
			w.WriteHeader(403)
			json.NewEncoder(w).Encode(api.ErrorBody{Error: err.Error(), Class: "forbidden"})
			return
		}
		json.NewEncoder(w).Encode(rep)
	})
	mux.HandleFunc("GET /1.0/peer/list", func(w http.ResponseWriter, r *http.Request) {
		s, _ := a.Signed()
		json.NewEncoder(w).Encode(s)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(tls.NewListener(l, a.ServerConfig()))
	defer srv.Close()

	tok, err := a.NewToken("", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	b := newTrust(t, t.TempDir(), "127.0.0.1:9")
	ctx := context.Background()
	// A token whose fingerprint is not the authority's CA: refused before
	// anything is sent.
	bad, _ := decodeToken(tok.Token)
	bad.Fingerprint = strings.Repeat("0", 64)
	if err := b.JoinWith(ctx, encodeToken(bad), "b", []string{"127.0.0.2"}); err == nil || !strings.Contains(err.Error(), "does not hold the token's CA") {
		t.Fatalf("join with a wrong fingerprint: %v", err)
	}
	// A token naming another authority: the host at the address is not it.
	other, _ := decodeToken(tok.Token)
	other.Authority = "someone-else"
	if err := b.JoinWith(ctx, encodeToken(other), "b", []string{"127.0.0.2"}); err == nil || !strings.Contains(err.Error(), `not the authority "someone-else"`) {
		t.Fatalf("join against the wrong authority: %v", err)
	}
	// A host may not claim the authority's address.
	if err := b.JoinWith(ctx, tok.Token, "b", []string{"127.0.0.1"}); err == nil || !strings.Contains(err.Error(), `"auth" already answers to 127.0.0.1`) {
		t.Fatalf("a join claiming the authority's address: %v", err)
	}
	tok, _ = a.NewToken("", 0, "")
	if err := b.JoinWith(ctx, tok.Token, "b", []string{"127.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	if b.role != RoleMember || b.caKey != nil || b.auth.Name != "auth" {
		t.Fatalf("member state: role %s caKey %v auth %+v", b.role, b.caKey != nil, b.auth)
	}
	if err := b.JoinWith(ctx, tok.Token, "b", nil); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("joining twice: %v", err)
	}
	// b dials the authority by address and is accepted; it can pull.
	cfg, err := b.ClientConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", l.Addr().String(), cfg)
	if err != nil {
		t.Fatalf("member -> authority: %v", err)
	}
	c.Close()
	if err := b.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	// The authority renews its own certificate: members still reach it
	// (its name is allowed with any certificate of the CA) and get the
	// list with its new serial.
	if err := a.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Pull(ctx); err != nil {
		t.Fatalf("a member pulling after the authority renewed: %v", err)
	}
	if m, _ := b.list.find("auth"); m.Serial != SerialHex(a.cert.Leaf.SerialNumber) {
		t.Fatal("the member did not get the authority's new serial")
	}
	// A member renews with the names it joined with, no others.
	_, der, _ := csr("b", []string{"b", "127.0.0.9"})
	if _, err := a.RenewFor(b.cert.Leaf, RenewCall{CSR: der}); err == nil || !strings.Contains(err.Error(), "keeps a host's names") {
		t.Fatalf("renewal with other names: %v", err)
	}
	if err := b.Renew(ctx); err != nil {
		t.Fatalf("member renewal: %v", err)
	}
	// A host of another CA is refused by the authority's handshake.
	s := newTrust(t, t.TempDir(), "")
	s.Init("stranger", []string{"127.0.0.1"}, false, "")
	scfg, _ := s.ClientConfig("127.0.0.1")
	scfg.RootCAs = a.pool // it trusts the authority, the authority does not trust it
	if c, err := tls.Dial("tcp", l.Addr().String(), scfg); err == nil {
		_, err = c.Read(make([]byte, 1))
		c.Close()
		if err == nil {
			t.Fatal("a stranger's certificate was accepted")
		}
	}
}
