package webui

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
)

//go:embed static
var files embed.FS

// Static is the pages' files (index.html, the modules, the vendored
// libraries), as served under /ui/.
func Static() fs.FS {
	sub, _ := fs.Sub(files, "static")
	return sub
}

// importMapHash is the CSP source of index.html's import map (an inline
// script the policy must name; nothing else inline runs).
var importMapHash = func() string {
	b, _ := files.ReadFile("static/index.html")
	_, rest, _ := strings.Cut(string(b), `<script type="importmap">`)
	inline, _, _ := strings.Cut(rest, "</script>")
	sum := sha256.Sum256([]byte(inline))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

// Prefix is where the web admin is served.
const Prefix = "/ui/"

// SessionInfo is what a page learns of its session: who it is, what it
// may do (the role's permissions: the buttons it shows) and the CSRF
// token to send with every write.
type SessionInfo struct {
	Name   string      `json:"name"`
	Kind   string      `json:"kind"`
	Role   string      `json:"role"`
	Tenant string      `json:"tenant,omitempty"`
	Perms  []auth.Perm `json:"perms"`
	CSRF   string      `json:"csrf"`
}

func infoOf(p auth.Principal, csrf string) SessionInfo {
	return SessionInfo{Name: p.Name, Kind: string(p.Kind), Role: string(p.Role), Tenant: p.Tenant, Perms: p.Role.Perms(), CSRF: csrf}
}

// maxLogin caps a sign-in's body.
const maxLogin = 4 << 10

// Handler serves the pages and the session's three routes:
// POST /ui/login, GET /ui/session and POST /ui/logout.
func Handler(s *Sessions) http.Handler {
	mux := http.NewServeMux()
	static := http.StripPrefix(Prefix, http.FileServerFS(Static()))
	mux.Handle("GET "+Prefix, static)
	mux.HandleFunc("POST "+Prefix+"login", s.serveLogin)
	mux.HandleFunc("GET "+Prefix+"session", s.serveSession)
	mux.HandleFunc("POST "+Prefix+"logout", s.serveLogout)
	return secureHeaders(mux)
}

// secureHeaders: the pages load only their own files and talk only to
// their own host; nothing frames them; answers are not cached but the
// vendored libraries.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self' "+importMapHash+"; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if strings.HasPrefix(r.URL.Path, Prefix+"vendor/") {
			h.Set("Cache-Control", "public, max-age=86400")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Sessions) serveLogin(w http.ResponseWriter, r *http.Request) {
	var req LoginRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLogin))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	req.Token, req.User = strings.TrimSpace(req.Token), strings.TrimSpace(req.User)
	if err != nil || req.Token == "" && (req.User == "" || req.Password == "") {
		api.Reply(w, nil, api.Errorf(api.ErrInvalid, "sign in with {\"token\": \"rf_NAME_SECRET\"} or {\"user\": NAME, \"password\": ...} (`ringfence token create NAME --role ROLE [--password-stdin]`)"))
		return
	}
	id, csrf, p, err := s.Start(r.Context(), req, r.RemoteAddr)
	if err != nil {
		api.Reply(w, nil, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(MaxTTL.Seconds())})
	api.Reply(w, infoOf(p, csrf), nil)
}

func (s *Sessions) serveSession(w http.ResponseWriter, r *http.Request) {
	p, ok, err := s.Authenticate(r)
	if !ok && err == nil {
		err = api.Errorf(api.ErrUnauthorized, "not signed in")
	}
	if err != nil {
		api.Reply(w, nil, err)
		return
	}
	api.Reply(w, infoOf(p, s.csrfOf(r)), nil)
}

// serveLogout ends the session (a write: it needs the CSRF token, so a
// foreign page cannot sign the admin out).
func (s *Sessions) serveLogout(w http.ResponseWriter, r *http.Request) {
	// Only a stale CSRF token is refused: an expired session or a
	// revoked token has nothing left to end.
	if _, ok, err := s.Authenticate(r); ok && err == ErrCSRF {
		api.Reply(w, nil, err)
		return
	}
	if id := cookieOf(r); id != "" {
		s.End(r.Context(), id)
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	api.Reply(w, struct{}{}, nil)
}
