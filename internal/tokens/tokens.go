// Package tokens is the remote API's bearer tokens: made with a role (and
// a tenant for the tenant roles), shown once, kept only as a SHA-256 hash,
// revocable, listed with their last use. Deny by default: anything that
// is not a known, live token with a matching hash is refused with one
// message that says nothing about why.
package tokens

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/names"
	"github.com/ringfence/ringfence/internal/store"
)

// Prefix is the store's key prefix: tokens/NAME.
const Prefix = "tokens/"

// Secrets are "rf_" NAME "_" and 32 random bytes in unpadded base64url.
const (
	secretPrefix = "rf_"
	randLen      = 43 // base64.RawURLEncoding of 32 bytes
	// MaxSecret is the longest secret ever looked at (a longer one is
	// refused before anything else).
	MaxSecret = len(secretPrefix) + names.MaxLen + 1 + randLen
)

// UseInterval is how often a token's last use is written to the store at
// most (not on every request).
const UseInterval = time.Minute

// record is a token in the store.
type record struct {
	Role     string    `json:"role"`
	Tenant   string    `json:"tenant,omitempty"`
	Hash     string    `json:"hash"` // base64 of the secret's SHA-256
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires,omitzero"`
	LastUsed time.Time `json:"last_used,omitzero"`
	Revoked  time.Time `json:"revoked,omitzero"`
	// Certs are the SHA-256 of the client certificates bound to the
	// token (hex): each stands for the token, for as long as it lives.
	Certs []string `json:"certs,omitempty"`
	// Password is the web admin sign-in password's hash (password.go).
	Password string `json:"password,omitempty"`
}

func (r record) view(name string) api.APIToken {
	return api.APIToken{Name: name, Role: r.Role, Tenant: r.Tenant, Created: r.Created, Expires: r.Expires, LastUsed: r.LastUsed,
		Revoked: r.Revoked, Certificates: r.Certs, Password: r.Password != ""}
}

// ErrInvalid is the one answer to a secret that is not a known token's
// (malformed, unknown name, wrong secret): the caller learns nothing more.
var ErrInvalid = api.Errorf(api.ErrUnauthorized, "invalid API token")

// Manager keeps the tokens in a store.
type Manager struct {
	st  store.Store
	Now func() time.Time
	// TenantKey, when set, is the store key of a tenant (internal/tenants):
	// a token of a tenant role is made only in the transaction that finds
	// its tenant, so a tenant being deleted cannot get a token meanwhile.
	TenantKey func(tenant string) string

	mu      sync.Mutex
	written map[string]time.Time // when each token's last use was last written
}

// New returns a manager of the tokens in st.
func New(st store.Store) *Manager {
	return &Manager{st: st, Now: time.Now, written: map[string]time.Time{}}
}

func hashOf(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Create makes a token and returns it with its secret (never stored).
func (m *Manager) Create(ctx context.Context, req api.APITokenRequest) (api.APITokenCreated, error) {
	if err := names.Check("token", req.Name); err != nil {
		return api.APITokenCreated{}, api.Errorf(api.ErrInvalid, "%v", err)
	}
	role, err := auth.ParseRole(req.Role, req.Tenant)
	if err != nil {
		return api.APITokenCreated{}, api.Errorf(api.ErrInvalid, "%v", err)
	}
	if req.Tenant != "" {
		if err := names.Check("tenant", req.Tenant); err != nil {
			return api.APITokenCreated{}, api.Errorf(api.ErrInvalid, "%v", err)
		}
	}
	if req.ExpiresSec < 0 {
		return api.APITokenCreated{}, api.Errorf(api.ErrInvalid, "a token's lifetime must be positive (0: no expiry)")
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return api.APITokenCreated{}, err
	}
	secret := secretPrefix + req.Name + "_" + base64.RawURLEncoding.EncodeToString(raw[:])
	now := m.Now().UTC().Truncate(time.Second)
	rec := record{Role: string(role), Tenant: req.Tenant, Hash: hashOf(secret), Created: now}
	if req.Password != "" {
		if rec.Password, err = hashPassword(req.Password); err != nil {
			return api.APITokenCreated{}, err
		}
	}
	if req.ExpiresSec > 0 {
		rec.Expires = now.Add(time.Duration(req.ExpiresSec) * time.Second)
	}
	b, _ := json.Marshal(rec)
	err = m.st.Update(ctx, func(tx store.Tx) error {
		if m.TenantKey != nil && req.Tenant != "" {
			if _, err := tx.Get(m.TenantKey(req.Tenant)); errors.Is(err, store.ErrNotFound) {
				return api.Errorf(api.ErrInvalid, "no tenant named %q: `ringfence tenant create %s` first (see `ringfence tenant list`)", req.Tenant, req.Tenant)
			} else if err != nil {
				return err
			}
		}
		if _, err := tx.Get(Prefix + req.Name); err == nil {
			return api.Errorf(api.ErrConflict, "token %q exists (revoke it, or choose another name)", req.Name)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return tx.Put(Prefix+req.Name, b)
	})
	if err != nil {
		return api.APITokenCreated{}, err
	}
	return api.APITokenCreated{APIToken: rec.view(req.Name), Secret: secret}, nil
}

// List returns every token (revoked ones too, marked), by name.
func (m *Manager) List(ctx context.Context) ([]api.APIToken, error) {
	kvs, err := m.st.List(ctx, Prefix)
	if err != nil {
		return nil, err
	}
	out := []api.APIToken{}
	for _, kv := range kvs {
		var r record
		if json.Unmarshal(kv.Value, &r) == nil {
			out = append(out, r.view(strings.TrimPrefix(kv.Key, Prefix)))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Holders names the live tokens (neither revoked nor expired at now) of
// tenant, read with list (a transaction's, or the store's).
func Holders(list func(prefix string) ([]store.KV, error), tenant string, now time.Time) ([]string, error) {
	kvs, err := list(Prefix)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, kv := range kvs {
		var r record
		if json.Unmarshal(kv.Value, &r) != nil || r.Tenant != tenant || !r.Revoked.IsZero() || !r.Expires.IsZero() && !now.Before(r.Expires) {
			continue
		}
		out = append(out, strings.TrimPrefix(kv.Key, Prefix))
	}
	sort.Strings(out)
	return out, nil
}

// Revoke marks a token revoked: it is refused from the next request on.
// The record stays, so the list shows when it was revoked and its name is
// not reused by mistake.
func (m *Manager) Revoke(ctx context.Context, name string) (api.APIToken, error) {
	var out api.APIToken
	err := m.update(ctx, name, func(r *record) error {
		if r.Revoked.IsZero() {
			r.Revoked = m.Now().UTC().Truncate(time.Second)
		}
		out = r.view(name)
		return nil
	})
	return out, err
}

// update changes one token's record in one transaction.
func (m *Manager) update(ctx context.Context, name string, fn func(*record) error) error {
	return m.st.Update(ctx, func(tx store.Tx) error { return updateTx(tx, name, fn) })
}

// updateTx changes one token's record within tx.
func updateTx(tx store.Tx, name string, fn func(*record) error) error {
	b, err := tx.Get(Prefix + name)
	if errors.Is(err, store.ErrNotFound) {
		return api.Errorf(api.ErrNotFound, "token %q", name)
	} else if err != nil {
		return err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	if err := fn(&r); err != nil {
		return err
	}
	b, _ = json.Marshal(r)
	return tx.Put(Prefix+name, b)
}

// nameOf is the token name a secret claims ("" when it is malformed).
func nameOf(secret string) string {
	if len(secret) > MaxSecret || !strings.HasPrefix(secret, secretPrefix) || len(secret) < len(secretPrefix)+2+randLen {
		return ""
	}
	name := secret[len(secretPrefix) : len(secret)-randLen-1]
	if secret[len(secret)-randLen-1] != '_' || !names.Valid(name) {
		return ""
	}
	return name
}

// dummy is compared against when no token is found, so an unknown name
// costs the same hash and comparison as a known one.
var dummy = hashOf("rf_none_" + strings.Repeat("A", randLen))

// Authenticate returns the principal a secret stands for, or an
// ErrUnauthorized error: ErrInvalid for anything but a known token's
// secret; a revoked or expired token (its secret proven) says which.
func (m *Manager) Authenticate(ctx context.Context, secret, remote string) (auth.Principal, error) {
	name := nameOf(secret)
	var r record
	want := dummy
	if name != "" {
		if b, err := m.st.Get(ctx, Prefix+name); err == nil && json.Unmarshal(b, &r) == nil {
			want = r.Hash
		}
	}
	got := hashOf(secret)
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 || name == "" || r.Hash == "" {
		return auth.Principal{}, ErrInvalid
	}
	return m.principal(ctx, auth.Token, name, r, remote)
}

// Lookup is the principal of the live token name, its secret already
// proven earlier (a web session signed in with it): refused, as
// Authenticate refuses, once the token is revoked, expired or gone.
func (m *Manager) Lookup(ctx context.Context, name, remote string) (auth.Principal, error) {
	var r record
	b, err := m.st.Get(ctx, Prefix+name)
	if err != nil || json.Unmarshal(b, &r) != nil {
		return auth.Principal{}, ErrInvalid
	}
	return m.principal(ctx, auth.Token, name, r, remote)
}

// principal is who a proven token (or a certificate bound to it) is,
// unless it is revoked or expired.
func (m *Manager) principal(ctx context.Context, kind auth.Kind, name string, r record, remote string) (auth.Principal, error) {
	now := m.Now()
	if !r.Revoked.IsZero() {
		return auth.Principal{}, api.Errorf(api.ErrUnauthorized, "API token %q was revoked at %s", name, r.Revoked.Format(time.RFC3339))
	}
	if !r.Expires.IsZero() && !now.Before(r.Expires) {
		return auth.Principal{}, api.Errorf(api.ErrUnauthorized, "API token %q expired at %s", name, r.Expires.Format(time.RFC3339))
	}
	role, err := auth.ParseRole(r.Role, r.Tenant)
	if err != nil {
		return auth.Principal{}, ErrInvalid
	}
	m.touch(ctx, name, now)
	return auth.Principal{Kind: kind, Name: name, Role: role, Tenant: r.Tenant, Remote: remote}, nil
}

// touch records a token's use, writing the store at most once per
// UseInterval per token.
func (m *Manager) touch(ctx context.Context, name string, now time.Time) {
	m.mu.Lock()
	if last, ok := m.written[name]; ok && now.Sub(last) < UseInterval {
		m.mu.Unlock()
		return
	}
	m.written[name] = now
	m.mu.Unlock()
	m.update(ctx, name, func(r *record) error {
		r.LastUsed = now.UTC().Truncate(time.Second)
		return nil
	})
}
