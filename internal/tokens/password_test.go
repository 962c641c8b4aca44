package tokens

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store/memstore"
)

// TestPassword: a token with a password signs in by name and password
// as the token's own principal; every wrong answer is the same message;
// a short password is refused at creation; revoking the token ends it;
// the store holds no password.
func TestPassword(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	m := New(st)
	if _, err := m.Create(ctx, api.APITokenRequest{Name: "ann", Role: "operator", Password: "short"}); err == nil || !strings.Contains(err.Error(), "needs 12 to 256") {
		t.Fatalf("a short password: %v", err)
	}
	const pw = "correct horse battery"
	if _, err := m.Create(ctx, api.APITokenRequest{Name: "ann", Role: "operator", Password: pw}); err != nil {
		t.Fatal(err)
	}
	m.Create(ctx, api.APITokenRequest{Name: "bob", Role: "operator"})
	for _, c := range []struct{ user, pw, want string }{
		{"ann", pw, ""}, {"ann", pw + "x", "wrong user or password"}, {"bob", pw, "wrong user or password"},
		{"nobody", pw, "wrong user or password"}, {"ann", strings.Repeat("x", 300), "wrong user or password"},
	} {
		p, err := m.AuthenticatePassword(ctx, c.user, c.pw, "r")
		if c.want == "" && (err != nil || p.Name != "ann" || p.Role != "operator") || c.want != "" && (err == nil || err.Error() != c.want) {
			t.Errorf("%s/%q: %+v %v, want %q", c.user, c.pw, p, err, c.want)
		}
	}
	if l, _ := m.List(ctx); !l[0].Password || l[1].Password {
		t.Fatalf("the list does not say which token has a password: %+v", l)
	}
	kvs, _ := st.List(ctx, Prefix)
	for _, kv := range kvs {
		if strings.Contains(string(kv.Value), pw) {
			t.Fatal("the store holds the password")
		}
	}
	m.Revoke(ctx, "ann")
	if _, err := m.AuthenticatePassword(ctx, "ann", pw, "r"); !errors.Is(err, api.ErrUnauthorized) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("a revoked token's password: %v", err)
	}
}
