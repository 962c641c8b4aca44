package webui

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/store/memstore"
)

// fakeCreds knows one token, "rf_good", named "good"; revoked makes its
// lookups fail as a revoked token's do.
type fakeCreds struct{ revoked bool }

func (f *fakeCreds) Authenticate(_ context.Context, secret, remote string) (auth.Principal, error) {
	if secret != "rf_good" {
		return auth.Principal{}, api.Errorf(api.ErrUnauthorized, "invalid API token")
	}
	return f.Lookup(context.Background(), "good", remote)
}

func (f *fakeCreds) AuthenticatePassword(ctx context.Context, name, pw, remote string) (auth.Principal, error) {
	if name != "good" || pw != "correct horse battery" {
		return auth.Principal{}, api.Errorf(api.ErrUnauthorized, "wrong user or password")
	}
	return f.Lookup(ctx, name, remote)
}

func (f *fakeCreds) Lookup(_ context.Context, name, remote string) (auth.Principal, error) {
	if f.revoked || name != "good" {
		return auth.Principal{}, api.Errorf(api.ErrUnauthorized, "API token %q was revoked", name)
	}
	return auth.Principal{Kind: auth.Token, Name: name, Role: auth.Operator, Remote: remote}, nil
}

func TestSessions(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name    string
		method  string
		cookie  string // "": none; "good": the session's id
		csrf    string // "good": the session's token
		later   time.Duration
		revoked bool
		ok      bool
		err     error
	}{
		{name: "no cookie", method: "GET", ok: false},
		{name: "read", method: "GET", cookie: "good", ok: true},
		{name: "write with the CSRF token", method: "POST", cookie: "good", csrf: "good", ok: true},
		{name: "write without it", method: "POST", cookie: "good", ok: true, err: ErrCSRF},
		{name: "write with a stale one", method: "DELETE", cookie: "good", csrf: "stale", ok: true, err: ErrCSRF},
		{name: "unknown cookie", method: "GET", cookie: "nope", ok: true, err: ErrExpired},
		{name: "idle too long", method: "GET", cookie: "good", later: IdleTTL + time.Second, ok: true, err: ErrExpired},
		{name: "token revoked", method: "GET", cookie: "good", revoked: true, ok: true, err: api.ErrUnauthorized},
	} {
		t.Run(c.name, func(t *testing.T) {
			creds := &fakeCreds{}
			s := NewSessions(creds, memstore.New())
			s.Now = func() time.Time { return now }
			id, csrf, p, err := s.Start(context.Background(), LoginRequest{Token: "rf_good"}, "1.2.3.4:5")
			if err != nil || p.Name != "good" {
				t.Fatalf("start: %v %+v", err, p)
			}
			creds.revoked = c.revoked
			s.Now = func() time.Time { return now.Add(c.later) }
			r := httptest.NewRequest(c.method, "/1.0/domains", nil)
			switch c.cookie {
			case "good":
				r.AddCookie(&http.Cookie{Name: CookieName, Value: id})
			case "nope":
				r.AddCookie(&http.Cookie{Name: CookieName, Value: "nope"})
			}
			switch c.csrf {
			case "good":
				r.Header.Set(CSRFHeader, csrf)
			case "stale":
				r.Header.Set(CSRFHeader, "stale")
			}
			got, ok, err := s.Authenticate(r)
			if ok != c.ok || (c.err == nil) != (err == nil) || c.err != nil && !errors.Is(err, c.err) && err != c.err {
				t.Fatalf("ok %v err %v, want ok %v err %v", ok, err, c.ok, c.err)
			}
			if c.err == nil && c.ok && got.Name != "good" {
				t.Fatalf("principal %+v", got)
			}
			// A refused session that has ended stays ended.
			if c.revoked || c.later > 0 {
				creds.revoked = false
				s.Now = func() time.Time { return now }
				if _, _, err := s.Authenticate(r); !errors.Is(err, ErrExpired) && err != ErrExpired {
					t.Fatalf("the ended session answers %v", err)
				}
			}
		})
	}
}

func TestSessionsSurviveARestart(t *testing.T) {
	st := memstore.New()
	id, csrf, _, err := NewSessions(&fakeCreds{}, st).Start(context.Background(), LoginRequest{User: "good", Password: "correct horse battery"}, "")
	if err != nil {
		t.Fatal(err)
	}
	// A new Sessions over the same store (the daemon restarted).
	r := httptest.NewRequest("POST", "/1.0/domains/x/pause", nil)
	r.AddCookie(&http.Cookie{Name: CookieName, Value: id})
	r.Header.Set(CSRFHeader, csrf)
	if p, ok, err := NewSessions(&fakeCreds{}, st).Authenticate(r); !ok || err != nil || p.Name != "good" {
		t.Fatalf("after a restart: %v %v %+v", ok, err, p)
	}
	kvs, _ := st.List(context.Background(), storePrefix)
	if len(kvs) != 1 || strings.Contains(kvs[0].Key, id) || strings.Contains(string(kvs[0].Value), id) {
		t.Fatalf("the store holds the cookie itself: %+v", kvs)
	}
}

func TestHandler(t *testing.T) {
	s := NewSessions(&fakeCreds{}, memstore.New())
	h := Handler(s)
	do := func(method, path, body string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		for _, c := range cookies {
			r.AddCookie(c)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for _, c := range []struct{ body, want string }{
		{`{"token":"rf_bad"}`, "invalid API token"}, {`{}`, "sign in with"}, {`not json`, "sign in with"},
		{`{"user":"good","password":"wrong password!"}`, "wrong user or password"}, {`{"user":"good"}`, "sign in with"},
	} {
		if w := do("POST", "/ui/login", c.body); w.Code != http.StatusUnauthorized && w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), c.want) {
			t.Errorf("login %s: %d %s", c.body, w.Code, w.Body)
		}
	}
	w := do("POST", "/ui/login", `{"token":"rf_good"}`)
	cs := w.Result().Cookies()
	if w.Code != 200 || len(cs) != 1 || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode || !strings.Contains(w.Body.String(), `"csrf"`) {
		t.Fatalf("login: %d %s %+v", w.Code, w.Body, cs)
	}
	if w := do("GET", "/ui/session", "", cs[0]); w.Code != 200 || !strings.Contains(w.Body.String(), `"domain.operate"`) {
		t.Fatalf("session: %d %s", w.Code, w.Body)
	}
	if w := do("POST", "/ui/logout", "", cs[0]); w.Code != http.StatusForbidden {
		t.Fatalf("logout without the CSRF token: %d", w.Code)
	}
	w = do("GET", "/ui/", "")
	body, _ := io.ReadAll(w.Body)
	if w.Code != 200 || !strings.Contains(string(body), `type="importmap"`) || !strings.Contains(w.Header().Get("Content-Security-Policy"), "script-src 'self' 'sha256-") {
		t.Fatalf("index: %d %q", w.Code, w.Header())
	}
	if w := do("GET", "/ui/vendor/xterm/xterm.mjs", ""); w.Code != 200 {
		t.Fatalf("vendored xterm: %d", w.Code)
	}
}

// TestInitialPageWeight: what the first page loads (the shell, its style,
// the dashboard) stays under 300 KB; the consoles' libraries are not
// among it (they load when a console is opened).
func TestInitialPageWeight(t *testing.T) {
	total := 0
	for _, f := range []string{"index.html", "style.css", "app.js", "dashboard.js"} {
		b, err := files.ReadFile("static/" + f)
		if err != nil {
			t.Fatal(err)
		}
		total += len(b)
		if f != "index.html" && (strings.Contains(string(b), "from '@xterm") || strings.Contains(string(b), "from '@novnc")) {
			t.Errorf("%s imports a console library statically", f)
		}
	}
	if total > 300<<10 {
		t.Fatalf("the first page is %d bytes, over 300 KB", total)
	}
	t.Logf("first page: %d bytes", total)
}
