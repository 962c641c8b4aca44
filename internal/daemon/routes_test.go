package daemon

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
)

// fill replaces a route's parameters with valid values.
func fill(path string) string {
	return paramRE.ReplaceAllStringFunc(path, func(p string) string {
		switch p {
		case "{token}":
			return "0123abcd"
		case "{op}":
			return "00112233445566778899aabbccddeeff"
		}
		return "x1"
	})
}

func call(h http.Handler, p auth.Principal, method, path, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if p.Remote == "" {
		p.Remote = "192.0.2.1:1"
	}
	r = r.WithContext(withPrincipal(context.Background(), p))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// as is a principal of role (a tenant role gets a tenant).
func as(role auth.Role) auth.Principal {
	p := auth.Principal{Kind: auth.Token, Name: "t", Role: role}
	if role.Tenanted() {
		p.Tenant = "acme"
	}
	return p
}

var allRoles = []auth.Role{auth.Admin, auth.Operator, auth.Auditor, auth.TenantAdmin, auth.TenantUser, auth.PeerHost, auth.Joiner}

// TestRouteTable walks every registered route with every role: a role
// without the route's permission gets 403 and nothing runs; every route
// names a known permission; the peer permissions are on exactly the
// routes a peer host needs (a migration, joining or renewing trust), so a
// new route cannot be exposed to peers, or to nobody, by accident.
func TestRouteTable(t *testing.T) {
	s := &Server{}
	peerOK := map[string]auth.Perm{
		"POST /migrate/incoming":     auth.PeerMigrate,
		"POST /migrate/data/{token}": auth.PeerMigrate,
		"POST /peer/join":            auth.PeerJoin,
		"POST /peer/renew":           auth.PeerSync,
		"GET /peer/list":             auth.PeerSync,
		"PUT /peer/list":             auth.PeerSync,
		// A cluster host forwards a verb on a domain this host owns.
		"POST /peer/forward": auth.PeerForward,
		// ... and relays a stream of one (console, VNC, a download).
		"POST /peer/relay": auth.PeerForward,
	}
	mux := s.handler(allRoles, forbidden)
	seen := map[string]bool{}
	var exposed []string
	for _, rt := range s.routes() {
		key := rt.method + " " + rt.path
		if seen[key] {
			t.Errorf("%s is registered twice", key)
		}
		seen[key] = true
		if !slices.Contains(auth.Perms(), rt.perm) {
			t.Errorf("%s needs %q, which is not a permission (auth.Perms)", key, rt.perm)
		}
		if want, ok := peerOK[key]; ok || strings.HasPrefix(string(rt.perm), "peer.") {
			exposed = append(exposed, key)
			if rt.perm != want {
				t.Errorf("%s needs %s; only the migration and trust routes are for peers (add it to this test only if a peer must call it)", key, rt.perm)
			}
		}
		for _, role := range allRoles {
			if role.Can(rt.perm) {
				continue
			}
			w := call(mux, as(role), rt.method, api.Version+fill(rt.path), "{}")
			if w.Code != http.StatusForbidden {
				t.Errorf("%s as %s: %d %s, want 403", key, role, w.Code, w.Body)
			}
		}
	}
	sort.Strings(exposed)
	if len(exposed) != len(peerOK) {
		t.Errorf("routes open to peers: %v, want exactly %d", exposed, len(peerOK))
	}
	// Paths outside the table: 403 on the peer listener too.
	peerMux := s.handler(peerRoles, forbidden)
	for _, p := range []string{"/", api.Version + "/nope", "/debug/pprof/"} {
		if w := call(peerMux, as(auth.PeerHost), "GET", p, ""); w.Code != http.StatusForbidden {
			t.Errorf("GET %s on the peer listener: %d", p, w.Code)
		}
	}
	// A request with no principal may do nothing.
	if w := call(mux, auth.Principal{}, "GET", api.Version+"/domains", ""); w.Code != http.StatusForbidden {
		t.Errorf("GET /domains with no principal: %d", w.Code)
	}
	checkTenantGate(t, s, mux)
}

// fakeOwners: every object named x1 is tenant other's (the tenant x1 is
// itself; the domain is domid 7 and otherUUID too), s1 is the host's and
// shared, nothing else exists.
type fakeOwners struct{}

const otherUUID = "6f1d2c3b-0000-4000-8000-00000000beef"

func (fakeOwners) owner(kind, name string) (string, bool, error) {
	switch {
	case name == "x1" && kind == "tenant":
		return "x1", false, nil
	case name == "x1", kind == "domain" && (name == "7" || name == otherUUID):
		return "other", false, nil
	case name == "s1":
		return "", true, nil
	}
	return "", false, notFoundAs(kind, name)
}

// checkTenantGate: on every route that names a domain (by name, domid or
// UUID), network, pool or tenant, a tenant role that holds the route's
// permission gets, for another tenant's object, exactly the 404 of one
// that does not exist, and nothing runs (the managers are nil here: a
// handler reached would panic); a shared host object is read-only to it.
func checkTenantGate(t *testing.T, s *Server, mux http.Handler) {
	t.Helper()
	s.owners = fakeOwners{}
	gated := 0
	for _, rt := range s.routes() {
		var kind, param string
		for _, p := range rt.params() {
			if k, ok := ownedParams[p]; ok {
				kind, param = k, p
				break
			}
		}
		if kind == "" {
			continue
		}
		for _, role := range []auth.Role{auth.TenantAdmin, auth.TenantUser} {
			if !role.Can(rt.perm) {
				continue
			}
			gated++
			for _, other := range []string{"x1", "7", otherUUID} {
				if other != "x1" && kind != "domain" {
					continue
				}
				path := api.Version + fill(strings.Replace(rt.path, "{"+param+"}", other, 1))
				w := call(mux, as(role), rt.method, path, "{}")
				body := strings.TrimSpace(w.Body.String())
				if other != "x1" {
					// Its domid or UUID: the answer to a name nobody has.
					want, _ := json.Marshal(api.ErrorBody{Error: notFoundAs(kind, other).Error(), Class: "not-found"})
					if w.Code != http.StatusNotFound || body != string(want) {
						t.Errorf("%s %s as %s: %d %s", rt.method, path, role, w.Code, body)
					}
					continue
				}
				nothing := call(mux, as(role), rt.method, strings.Replace(path, "/x1", "/zz9", 1), "{}")
				if w.Code != http.StatusNotFound || body != strings.ReplaceAll(strings.TrimSpace(nothing.Body.String()), "zz9", "x1") || nothing.Code != w.Code {
					t.Errorf("%s %s as %s (another tenant's): %d %s; for one that does not exist: %d %s", rt.method, path, role, w.Code, body, nothing.Code, nothing.Body)
				}
			}
			if kind != "tenant" && rt.method != http.MethodGet {
				path := api.Version + fill(strings.Replace(rt.path, "{"+param+"}", "s1", 1))
				if w := call(mux, as(role), rt.method, path, "{}"); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "shared with the tenants to read") {
					t.Errorf("%s %s as %s (a shared object): %d %s", rt.method, path, role, w.Code, w.Body)
				}
			}
		}
	}
	t.Logf("%d routes x tenant roles through the tenants' gate", gated)
	if gated < 40 {
		t.Errorf("only %d routes x tenant roles went through the tenants' gate", gated)
	}
}

// Names in paths follow the name rule on every route; a non-canonical
// path is refused rather than redirected; bodies are strict and capped.
func TestRouteInputRules(t *testing.T) {
	s := &Server{}
	admin := s.handler(socketRoles, nil)
	for _, rt := range s.routes() {
		if !auth.Admin.Can(rt.perm) || len(rt.params()) == 0 {
			continue
		}
		bad := strings.Replace(rt.path, "{"+rt.params()[0]+"}", "a..b", 1)
		w := call(admin, as(auth.Admin), rt.method, api.Version+fill(bad), "{}")
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "not a valid") {
			t.Errorf("%s %s: %d %s", rt.method, bad, w.Code, w.Body)
		}
		ctl := strings.Replace(rt.path, "{"+rt.params()[0]+"}", "g1%0D%0AX-Evil:%201", 1)
		if w := call(admin, as(auth.Admin), rt.method, api.Version+fill(ctl), "{}"); w.Code != http.StatusBadRequest || strings.Contains(w.Body.String(), "\r\n") {
			t.Errorf("%s with CR LF in a name: %d %q", rt.method, w.Code, w.Body)
		}
	}
	for _, p := range []string{"/domains/../domains/g1/destroy", "/domains/g1/./destroy", "/domains//destroy"} {
		w := call(admin, as(auth.Admin), "POST", api.Version+p, "")
		if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" {
			t.Errorf("POST %s: %d (Location %q), want 400 and no redirect", p, w.Code, w.Header().Get("Location"))
		}
	}
	if w := call(admin, as(auth.Admin), "POST", api.Version+"/pools", `{"name":"p","dir":"/x","bogus":1}`); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "bogus") {
		t.Errorf("unknown field: %d %s", w.Code, w.Body)
	}
	big := `{"name":"` + strings.Repeat("a", maxBody) + `"}`
	if w := call(admin, as(auth.Admin), "POST", api.Version+"/pools", big); w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d %s", w.Code, w.Body.String()[:min(200, w.Body.Len())])
	}
}

// A migration target reaches a request line and a TLS server name: only a
// host name or IP and a port pass.
func TestCheckTarget(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"127.0.0.1:7443", true}, {"[2001:db8::1]:7443", true}, {"host-2.example.net:7443", true},
		{"a\r\nX-Evil: 1:7443", false}, {"host:0", false}, {"host:99999", false}, {"host", false},
		{"../x:1", false}, {"h/x:1", false}, {":7443", false},
	} {
		if _, err := checkTarget(tc.in); (err == nil) != tc.ok {
			t.Errorf("checkTarget(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

// The caps: per source (an IPv6 /64 counts as one), overall, and a
// verified peer moves to its own budget so anonymous clients cannot keep
// it out.
func TestGuardedListenerCaps(t *testing.T) {
	l := newGuardedListener(nil, "t", 3, 2, nil)
	a := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1}
	if sourceOf(a) != "192.0.2.1" || sourceOf(&net.TCPAddr{IP: net.ParseIP("2001:db8::1:2")}) != sourceOf(&net.TCPAddr{IP: net.ParseIP("2001:db8::ffff")}) {
		t.Fatal("sources")
	}
	if !l.take("x") || !l.take("x") || l.take("x") {
		t.Fatal("per-source cap")
	}
	if !l.take("y") || l.take("z") {
		t.Fatal("total cap")
	}
	c1, c2 := net.Pipe()
	defer c2.Close()
	tc := &trackedConn{Conn: c1, release: func() { l.give("x") }}
	if !l.promote(tc) || l.Active() != 2 || !l.take("z") {
		t.Fatalf("a promoted connection still counts: active %d", l.Active())
	}
	tc.Close()
	if l.peers != 0 {
		t.Fatal("the peer slot was not given back")
	}
}
