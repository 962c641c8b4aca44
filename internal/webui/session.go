// Package webui is the web admin: its pages, embedded in the binary and
// served under /ui/ on the API listener, and the browsers' sessions. A
// session is one more credential the API's gate accepts (a cookie that
// stands for an API token), so the pages call the same /1.0 API as the
// CLI: there is no route of their own beyond signing in and out.
package webui

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/store"
)

// The session cookie and the header that carries a page's CSRF token on
// every write.
const (
	CookieName = "rf_session"
	CSRFHeader = "X-CSRF-Token"
)

// Session lifetimes: idle for IdleTTL or alive for MaxTTL, it ends (the
// token it stands for may end sooner: revoked or expired). The last use
// is written at most every touchEvery.
const (
	IdleTTL    = 30 * time.Minute
	MaxTTL     = 12 * time.Hour
	touchEvery = time.Minute
)

// Prefix of the sessions in the store: webui/sessions/SHA256(cookie), so
// the store never holds a cookie that works.
const storePrefix = "webui/sessions/"

// ErrExpired is the answer to a cookie that names no live session.
var ErrExpired = api.Errorf(api.ErrUnauthorized, "your session has expired or was ended: sign in again")

// ErrCSRF is the answer to a write whose CSRF token is not its session's.
var ErrCSRF = api.Errorf(api.ErrForbidden, "this page's CSRF token is stale or missing (the session changed): reload the page and try again; nothing was changed")

// Credentials proves API tokens (internal/tokens' Manager): a secret, or
// a token's name (the user) and its password, at sign-in; then the token
// by name on each request (so revoking it ends its sessions).
type Credentials interface {
	Authenticate(ctx context.Context, secret, remote string) (auth.Principal, error)
	AuthenticatePassword(ctx context.Context, name, password, remote string) (auth.Principal, error)
	Lookup(ctx context.Context, name, remote string) (auth.Principal, error)
}

// LoginRequest signs in with an API token, or a user (a token's name)
// and its password.
type LoginRequest struct {
	Token    string `json:"token,omitempty"`
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
}

// Sessions are the browsers signed in. They are kept in the store, so a
// page outlives a daemon restart (it reconnects and goes on).
type Sessions struct {
	creds Credentials
	st    store.Store
	Now   func() time.Time
}

// record is one browser's sign-in: the token it proved, its CSRF token.
type record struct {
	Token   string    `json:"token"`
	CSRF    string    `json:"csrf"`
	Created time.Time `json:"created"`
	Seen    time.Time `json:"seen"`
}

// NewSessions keeps sessions in st for the tokens creds proves.
func NewSessions(creds Credentials, st store.Store) *Sessions {
	return &Sessions{creds: creds, st: st, Now: time.Now}
}

func randomID() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func keyOf(id string) string {
	sum := sha256.Sum256([]byte(id))
	return storePrefix + hex.EncodeToString(sum[:])
}

// Start proves the request's token, or user and password, and opens a
// session for it: its id (the cookie's value), its CSRF token and the
// principal.
func (s *Sessions) Start(ctx context.Context, req LoginRequest, remote string) (id, csrf string, p auth.Principal, err error) {
	if req.Token != "" {
		p, err = s.creds.Authenticate(ctx, req.Token, remote)
	} else {
		p, err = s.creds.AuthenticatePassword(ctx, req.User, req.Password, remote)
	}
	if err != nil {
		return "", "", p, err
	}
	id, csrf = randomID(), randomID()
	now := s.Now().UTC()
	b, _ := json.Marshal(record{Token: p.Name, CSRF: csrf, Created: now, Seen: now})
	if err := store.Put(ctx, s.st, keyOf(id), b); err != nil {
		return "", "", p, err
	}
	return id, csrf, p, nil
}

// End closes the session id (signing out).
func (s *Sessions) End(ctx context.Context, id string) error {
	return store.Delete(ctx, s.st, keyOf(id))
}

// live is the session of id, or nil when there is none or it has expired
// (then it is dropped); its last use is written now and then.
func (s *Sessions) live(ctx context.Context, id string) *record {
	b, err := s.st.Get(ctx, keyOf(id))
	var r record
	if err != nil || json.Unmarshal(b, &r) != nil {
		return nil
	}
	now := s.Now()
	if now.Sub(r.Seen) > IdleTTL || now.Sub(r.Created) > MaxTTL {
		s.End(ctx, id)
		return nil
	}
	if now.Sub(r.Seen) > touchEvery {
		r.Seen = now.UTC()
		nb, _ := json.Marshal(r)
		store.Put(ctx, s.st, keyOf(id), nb)
	}
	return &r
}

// Sweep drops the expired sessions (a signed-out browser never comes
// back to end its own).
func (s *Sessions) Sweep(ctx context.Context) error {
	kvs, err := s.st.List(ctx, storePrefix)
	if err != nil {
		return err
	}
	now := s.Now()
	return s.st.Update(ctx, func(tx store.Tx) error {
		for _, kv := range kvs {
			var r record
			if json.Unmarshal(kv.Value, &r) != nil || now.Sub(r.Seen) > IdleTTL || now.Sub(r.Created) > MaxTTL {
				if err := tx.Delete(kv.Key); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// safeMethod: a request that changes nothing needs no CSRF token.
func safeMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }

// Authenticate is the principal of a request's session cookie. ok is
// false when the request brings no cookie (another credential may
// apply); with one, err says why it is refused: expired, a write without
// the session's CSRF token, or the token it stands for no longer valid.
func (s *Sessions) Authenticate(r *http.Request) (p auth.Principal, ok bool, err error) {
	id := cookieOf(r)
	if id == "" {
		return p, false, nil
	}
	ss := s.live(r.Context(), id)
	if ss == nil {
		return p, true, ErrExpired
	}
	if !safeMethod(r.Method) && subtle.ConstantTimeCompare([]byte(r.Header.Get(CSRFHeader)), []byte(ss.CSRF)) != 1 {
		return p, true, ErrCSRF
	}
	p, err = s.creds.Lookup(r.Context(), ss.Token, r.RemoteAddr)
	if err != nil {
		s.End(r.Context(), id)
		return p, true, err
	}
	return p, true, nil
}

func cookieOf(r *http.Request) string {
	c, err := r.Cookie(CookieName)
	if err != nil || len(c.Value) > 64 {
		return ""
	}
	return c.Value
}

// csrfOf is the CSRF token of the request's live session ("" if none).
func (s *Sessions) csrfOf(r *http.Request) string {
	if ss := s.live(r.Context(), cookieOf(r)); ss != nil {
		return ss.CSRF
	}
	return ""
}
