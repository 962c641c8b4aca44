package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/store/memstore"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newManager(t *testing.T) (*Manager, *memstore.Mem, *clock) {
	t.Helper()
	st := memstore.New()
	m := New(st)
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m.Now = c.now
	return m, st, c
}

func TestCreateAuthenticate(t *testing.T) {
	m, st, _ := newManager(t)
	ctx := context.Background()
	tok, err := m.Create(ctx, api.APITokenRequest{Name: "ci", Role: "operator"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.Secret, "rf_ci_") || len(tok.Secret) != len("rf_ci_")+randLen {
		t.Fatalf("secret %q: want rf_ci_ and 43 base64url characters", tok.Secret)
	}
	raw, _ := st.Get(ctx, Prefix+"ci")
	if strings.Contains(string(raw), tok.Secret[6:]) {
		t.Fatal("the store holds the secret")
	}
	p, err := m.Authenticate(ctx, tok.Secret, "10.0.0.1:5")
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != auth.Token || p.Name != "ci" || p.Role != auth.Operator || p.Remote != "10.0.0.1:5" {
		t.Fatalf("principal %+v", p)
	}
	if _, err := m.Create(ctx, api.APITokenRequest{Name: "ci", Role: "admin"}); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("a second token of the same name: %v", err)
	}
}

func TestCreateRefuses(t *testing.T) {
	m, _, _ := newManager(t)
	ctx := context.Background()
	for _, req := range []api.APITokenRequest{
		{Name: "a", Role: "root"},
		{Name: "a", Role: "peer-host"},
		{Name: "a", Role: "tenant-user"},
		{Name: "a", Role: "admin", Tenant: "t1"},
		{Name: "../x", Role: "admin"},
		{Name: "a", Role: "tenant-admin", Tenant: "a/b"},
		{Name: "a", Role: "admin", ExpiresSec: -1},
	} {
		if _, err := m.Create(ctx, req); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("%+v: %v, want invalid", req, err)
		}
	}
}

func TestRefusals(t *testing.T) {
	m, _, c := newManager(t)
	ctx := context.Background()
	good, _ := m.Create(ctx, api.APITokenRequest{Name: "good", Role: "auditor"})
	short, _ := m.Create(ctx, api.APITokenRequest{Name: "short", Role: "admin", ExpiresSec: 60})
	gone, _ := m.Create(ctx, api.APITokenRequest{Name: "gone", Role: "admin"})
	if _, err := m.Revoke(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Revoke(ctx, "nobody"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("revoking an unknown token: %v", err)
	}
	wrong := good.Secret[:len(good.Secret)-1] + "x"
	if strings.HasSuffix(good.Secret, "x") {
		wrong = good.Secret[:len(good.Secret)-1] + "y"
	}
	// Another token's random part under this name.
	swapped := "rf_good_" + short.Secret[len(short.Secret)-randLen:]
	for _, s := range []string{"", "x", "rf_", wrong, swapped, "rf_nobody_" + strings.Repeat("A", randLen),
		strings.Repeat("A", 100000), "Bearer " + good.Secret, good.Secret + "\x00"} {
		if _, err := m.Authenticate(ctx, s, ""); err != ErrInvalid {
			t.Errorf("%.40q: %v, want the one invalid-token error", s, err)
		}
	}
	if _, err := m.Authenticate(ctx, gone.Secret, ""); !errors.Is(err, api.ErrUnauthorized) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("revoked: %v", err)
	}
	if _, err := m.Authenticate(ctx, short.Secret, ""); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(time.Minute)
	if _, err := m.Authenticate(ctx, short.Secret, ""); !errors.Is(err, api.ErrUnauthorized) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired: %v", err)
	}
}

func TestLastUsedThrottled(t *testing.T) {
	m, st, c := newManager(t)
	ctx := context.Background()
	tok, _ := m.Create(ctx, api.APITokenRequest{Name: "u", Role: "tenant-user", Tenant: "blue"})
	writes := 0
	st.FailUpdates(func(map[string][]byte) error { writes++; return nil })
	for i := 0; i < 100; i++ {
		p, err := m.Authenticate(ctx, tok.Secret, "")
		if err != nil || p.Tenant != "blue" {
			t.Fatalf("%+v %v", p, err)
		}
		c.t = c.t.Add(time.Second)
	}
	if writes != 2 { // at 0 s and at 60 s
		t.Fatalf("%d writes of last use in 100 s, want 2", writes)
	}
	list, err := m.List(ctx)
	if err != nil || len(list) != 1 || list[0].LastUsed.IsZero() {
		t.Fatalf("list %+v %v", list, err)
	}
}

func selfSigned(t *testing.T) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestCertificates: a bound certificate is its token (role, life,
// revocation); an unbound one is nobody; one certificate, one token.
func TestCertificates(t *testing.T) {
	m, _, _ := newManager(t)
	ctx := context.Background()
	m.Create(ctx, api.APITokenRequest{Name: "a", Role: "operator"})
	m.Create(ctx, api.APITokenRequest{Name: "b", Role: "admin"})
	der := selfSigned(t)
	if _, err := m.AuthenticateCert(ctx, der, ""); err != ErrUnknownCert {
		t.Fatalf("an unbound certificate: %v", err)
	}
	if _, err := m.BindCert(ctx, "a", []byte("junk")); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("junk bound: %v", err)
	}
	if _, err := m.BindCert(ctx, "a", der); err != nil {
		t.Fatal(err)
	}
	if _, err := m.BindCert(ctx, "b", der); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("a certificate bound to a second token: %v", err)
	}
	p, err := m.AuthenticateCert(ctx, der, "")
	if err != nil || p.Kind != auth.Cert || p.Name != "a" || p.Role != auth.Operator {
		t.Fatalf("%+v %v", p, err)
	}
	if list, _ := m.List(ctx); len(list[0].Certificates) != 1 {
		t.Fatalf("list: %+v", list)
	}
	m.Revoke(ctx, "a")
	if _, err := m.AuthenticateCert(ctx, der, ""); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("the certificate of a revoked token: %v", err)
	}
}

// A tenant role's token is made only for a tenant that exists (checked
// in its own transaction); Holders names a tenant's live tokens only.
func TestTenantTokens(t *testing.T) {
	m, st, c := newManager(t)
	ctx := context.Background()
	m.TenantKey = func(n string) string { return "tenants/" + n }
	if _, err := m.Create(ctx, api.APITokenRequest{Name: "a", Role: "tenant-admin", Tenant: "acme"}); !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), `no tenant named "acme"`) {
		t.Fatalf("a token of a tenant that does not exist: %v", err)
	}
	if kvs, _ := st.List(ctx, Prefix); len(kvs) != 0 {
		t.Fatalf("a refused token was stored: %v", kvs)
	}
	st.Update(ctx, func(tx store.Tx) error { return tx.Put("tenants/acme", []byte("{}")) })
	for _, req := range []api.APITokenRequest{
		{Name: "a", Role: "tenant-admin", Tenant: "acme"}, {Name: "u", Role: "tenant-user", Tenant: "acme"},
		{Name: "old", Role: "tenant-user", Tenant: "acme"}, {Name: "brief", Role: "tenant-user", Tenant: "acme", ExpiresSec: 60},
		{Name: "host", Role: "admin"},
	} {
		if _, err := m.Create(ctx, req); err != nil {
			t.Fatalf("%s: %v", req.Name, err)
		}
	}
	m.Revoke(ctx, "old")
	list := func(p string) ([]store.KV, error) { return st.List(ctx, p) }
	for _, tc := range []struct {
		tenant string
		at     time.Time
		want   string
	}{
		{"acme", c.t, "a,brief,u"}, {"acme", c.t.Add(time.Hour), "a,u"}, {"beta", c.t, ""}, {"", c.t, "host"},
	} {
		got, err := Holders(list, tc.tenant, tc.at)
		if err != nil || strings.Join(got, ",") != tc.want {
			t.Errorf("Holders(%q, %s) = %v %v, want %s", tc.tenant, tc.at, got, err, tc.want)
		}
	}
}
