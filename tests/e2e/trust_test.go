package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/daemon"
	"github.com/ringfence/ringfence/internal/peer"
)

// peerHTTP is an HTTPS client inside ns that presents the certificate of
// the host whose state dir is state (nil cfg: no certificate).
func peerHTTP(t *testing.T, ns string, cfg *tls.Config) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNetnsErr(ns, func() (err error) {
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// hostTLS is the client TLS of a stopped or running env's host identity.
func hostTLS(t *testing.T, e *Env, server string) *tls.Config {
	t.Helper()
	tr, err := peer.Open(peer.Files{Dir: filepath.Join(e.State, "tls")}, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := tr.ClientConfig(server)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

var paramRE = regexp.MustCompile(`\{[a-z]+\}`)

// TestPeerListenerServesOnlyMigration: a host of our own CA, on our peer
// list, reaches only the migration and trust routes; every other route of
// the API answers 403 on the peer listener, and so does an anonymous
// caller everywhere but the join. The attacks of the security review are
// among them: a domain with a host file as its disk, a save to a host
// path, a pool on /etc, a volume delete.
func TestPeerListenerServesOnlyMigration(t *testing.T) {
	port := 21000 + os.Getpid()%20000
	srcAddr := fmt.Sprintf("127.0.0.1:%d", port)
	src := NewEnvWith(t, EnvOptions{ServeArgs: []string{"--listen", srcAddr}})
	src.MustRF("host", "trust", "--peer-name", "src", "--name", "127.0.0.1")
	mate := NewEnvWith(t, EnvOptions{Netns: src.Netns})
	mate.JoinTo(src, "mate", "127.0.0.2")
	src.Boot("g1", "")
	pid := src.Domain("g1").PID

	asPeer := peerHTTP(t, src.Netns, hostTLS(t, mate, "127.0.0.1"))
	anon := peerHTTP(t, src.Netns, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	base := "https://" + srcAddr + api.Version
	do := func(c *http.Client, method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	open := 0
	for _, rt := range daemon.Routes() {
		path := paramRE.ReplaceAllString(rt.Path, "g1")
		if !auth.PeerHost.Can(rt.Perm) {
			if code, body := do(asPeer, rt.Method, path, "{}"); code != http.StatusForbidden {
				t.Errorf("peer host: %s %s answered %d %s, want 403", rt.Method, path, code, body)
			}
		} else {
			open++
		}
		if !auth.Joiner.Can(rt.Perm) {
			if code, body := do(anon, rt.Method, path, "{}"); code != http.StatusForbidden {
				t.Errorf("anonymous: %s %s answered %d %s, want 403", rt.Method, path, code, body)
			}
		}
	}
	if open != 7 {
		t.Errorf("%d routes are open to peer hosts, want the 7 migration, trust, cluster-forward and stream-relay ones", open)
	}
	// The review's attacks, by name.
	attacks := []struct{ method, path, body string }{
		{"POST", "/domains", `{"spec":{"name":"x","kernel":"` + imgPaths.Kernel + `","disks":[{"target":"/etc/shadow","vdev":"xvda"}]}}`},
		{"POST", "/domains/g1/save", `{"path":"/etc/cron.d/x"}`},
		{"POST", "/pools", `{"name":"etc","dir":"/etc"}`},
		{"DELETE", "/pools/etc/volumes/shadow", ""},
		{"POST", "/domains/g1/destroy", ""},
	}
	for _, a := range attacks {
		if code, body := do(asPeer, a.method, a.path, a.body); code != http.StatusForbidden || !strings.Contains(body, "not served on the peer listener") {
			t.Errorf("peer %s %s: %d %s", a.method, a.path, code, body)
		}
	}
	if code, body := do(anon, "POST", "/peer/join", `{"secret":"00","csr":""}`); code != http.StatusForbidden || !strings.Contains(body, "unknown join token") {
		t.Errorf("anonymous join with a bad token: %d %s", code, body)
	}
	if d := src.Domain("g1"); d.PID != pid {
		t.Fatalf("g1 changed under the peer's calls: pid %d, was %d", d.PID, pid)
	}
	if ds := src.List(); len(ds) != 1 {
		t.Fatalf("domains after the attacks: %v", ds)
	}
}

// TestPeerTrust: the CA key stays on the authority; hosts join with
// single-use tokens, are listed, renewed and revoked, and every bad input
// gets one clear error with nothing changed.
func TestPeerTrust(t *testing.T) {
	port := 22000 + os.Getpid()%20000
	aAddr, bAddr, cAddr := fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.2:%d", port+1), fmt.Sprintf(":%d", port+2)
	a := NewEnvWith(t, EnvOptions{ServeArgs: []string{"--listen", aAddr}})
	a.MustRF("host", "trust", "--peer-name", "alpha", "--name", "127.0.0.1")
	b := NewEnvWith(t, EnvOptions{Netns: a.Netns, ServeArgs: []string{"--listen", bAddr}})
	c := NewEnvWith(t, EnvOptions{Netns: a.Netns, ServeArgs: []string{"--listen", cAddr, guestStorage()}})

	// Bad tokens: unknown, malformed, expired, used, for another name.
	peersBefore := a.MustRF("host", "peers", "--json")
	mk := func(args ...string) string {
		return strings.TrimSpace(a.MustRF(append([]string{"host", "token"}, args...)...))
	}
	forBeta := mk("--peer-name", "beta")
	tampered := strings.TrimSuffix(forBeta, forBeta[len(forBeta)-4:]) + "AAAA"
	for _, tc := range []struct {
		what, token string
		args        []string
		want        string
	}{
		{"not a token", "hello", nil, "not a Ringfence join token"},
		{"tampered", tampered, nil, "token"},
		{"for another host", forBeta, []string{"--peer-name", "gamma"}, `this token is for host "beta", not "gamma"`},
	} {
		r := c.RF(append([]string{"host", "join", tc.token, "--name", "127.0.0.3"}, tc.args...)...)
		if r.Code == 0 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("%s: %+v, want %q", tc.what, r, tc.want)
		}
	}
	short := mk("--ttl", "1s")
	time.Sleep(1500 * time.Millisecond)
	if r := c.RF("host", "join", short, "--peer-name", "gamma", "--name", "127.0.0.3"); r.Code == 0 || !strings.Contains(r.Stderr, "expired at") {
		t.Errorf("expired token: %+v", r)
	}
	if r := a.RF("host", "token", "--ttl", "2h"); r.Code == 0 || !strings.Contains(r.Stderr, "at most 1h") {
		t.Errorf("a two-hour token: %+v", r)
	}
	if got := a.MustRF("host", "peers", "--json"); got != peersBefore {
		t.Errorf("refused joins changed the peer list:\n%s\nwas\n%s", got, peersBefore)
	}
	if h, _ := c.Client.Host(context.Background()); h.Peer != nil {
		t.Errorf("a refused join left c trusted: %+v", h.Peer)
	}

	// The good join: b gets a certificate for its own key, never the CA key.
	b.MustRF("host", "join", forBeta, "--peer-name", "beta", "--name", "127.0.0.2")
	if _, err := os.Stat(filepath.Join(b.State, "tls", "ca-key.pem")); err == nil {
		t.Fatal("a joined host holds the CA key")
	}
	if r := c.RF("host", "join", forBeta, "--peer-name", "beta", "--name", "127.0.0.3"); r.Code == 0 || !strings.Contains(r.Stderr, `already used by "beta"`) {
		t.Errorf("reused token: %+v", r)
	}
	// A name clash: c asks to be "beta" too.
	if r := c.RF("host", "join", mk(), "--peer-name", "beta", "--name", "127.0.0.3"); r.Code == 0 || !strings.Contains(r.Stderr, `"beta" is already a peer`) {
		t.Errorf("name clash: %+v", r)
	}
	// An address clash: c asks for beta's address.
	if r := c.RF("host", "join", mk(), "--peer-name", "gamma", "--name", "127.0.0.2"); r.Code == 0 || !strings.Contains(r.Stderr, `"beta" already answers to 127.0.0.2`) {
		t.Errorf("name clash: %+v", r)
	}
	// c listens on every address: the authority reaches it where it came from.
	c.JoinTo(a, "gamma", "127.0.0.3")
	var l api.PeerList
	json.Unmarshal([]byte(a.MustRF("host", "peers", "--json")), &l)
	if len(l.Peers) != 3 {
		t.Fatalf("peers: %+v", l)
	}
	// Every member got the list with everyone (pushed).
	b.Await("b to learn of gamma", 10*time.Second, func() bool {
		var bl api.PeerList
		json.Unmarshal([]byte(b.MustRF("host", "peers", "--json")), &bl)
		return len(bl.Peers) == 3
	})
	var info api.HostInfo
	json.Unmarshal([]byte(b.MustRF("info", "--json")), &info)
	if info.Peer == nil || info.Peer.Role != "member" || info.Peer.Name != "beta" || time.Until(info.Peer.NotAfter) < 300*24*time.Hour {
		t.Fatalf("info of a member: %+v", info.Peer)
	}
	if out := b.MustRF("info"); !strings.Contains(out, "certificate expires") {
		t.Errorf("info does not show the expiry:\n%s", out)
	}

	// Renewal: a new certificate (serial), the old one no longer accepted.
	oldTLS := hostTLS(t, b, "127.0.0.1")
	b.MustRF("host", "renew")
	var after api.HostInfo
	json.Unmarshal([]byte(b.MustRF("info", "--json")), &after)
	if after.Peer.Serial == info.Peer.Serial {
		t.Fatal("renew kept the serial")
	}
	cl := peerHTTP(t, a.Netns, oldTLS)
	if _, err := cl.Get("https://" + aAddr + api.Version + "/peer/list"); err == nil {
		t.Error("the authority accepted beta's old certificate after a renewal")
	}
	if resp, err := peerHTTP(t, a.Netns, hostTLS(t, b, "127.0.0.1")).Get("https://" + aAddr + api.Version + "/peer/list"); err != nil {
		t.Errorf("the renewed certificate: %v", err)
	} else {
		resp.Body.Close()
	}

	// Bad revocations, then a real one: gamma refuses beta at the next
	// handshake once the list reaches it.
	if r := a.RF("host", "revoke", "alpha"); r.Code == 0 || !strings.Contains(r.Stderr, "holds the CA key") {
		t.Errorf("revoking the CA holder: %+v", r)
	}
	if r := a.RF("host", "revoke", "nobody"); r.Code == 0 || !strings.Contains(r.Stderr, "not on the peer list") {
		t.Errorf("revoking an unknown host: %+v", r)
	}
	if r := b.RF("host", "revoke", "gamma"); r.Code == 0 || !strings.Contains(r.Stderr, "only the authority") {
		t.Errorf("revoking from a member: %+v", r)
	}
	a.MustRF("host", "revoke", "beta")
	c.Await("gamma to drop beta", 10*time.Second, func() bool {
		return !strings.Contains(c.MustRF("host", "peers"), "beta")
	})
	gammaAddr := fmt.Sprintf("127.0.0.3:%d", port+2)
	if _, err := peerHTTP(t, a.Netns, hostTLS(t, b, "127.0.0.3")).Get("https://" + gammaAddr + api.Version + "/peer/list"); err == nil {
		t.Error("gamma accepted revoked beta")
	}

	// A certificate for the wrong name: gamma's carries 127.0.0.3, not
	// 127.0.0.4, though it listens there too.
	a.Boot("mover", "")
	r := a.RF("migrate", "mover", fmt.Sprintf("127.0.0.4:%d", port+2))
	if r.Code == 0 || !strings.Contains(r.Stderr, "is for gamma, 127.0.0.3, not 127.0.0.4") {
		t.Errorf("migration to a host whose certificate is for another name: %+v", r)
	}
	if a.Domain("mover").PID == 0 || len(c.List()) != 0 {
		t.Fatal("a refused migration moved something")
	}
	// And the same migration by a name the certificate carries works.
	a.MustRF("migrate", "mover", gammaAddr)
	if len(c.List()) != 1 {
		t.Fatal("the migration to gamma did not arrive")
	}

	// Offline set-ups: copying a managed CA is refused; --offline works.
	if r := c.RF("host", "trust", "--ca-from", filepath.Join(a.State, "tls")); r.Code == 0 || !strings.Contains(r.Stderr, "already trusted") {
		t.Errorf("re-trusting a member: %+v", r)
	}
	d := NewEnvWith(t, EnvOptions{Netns: a.Netns})
	if r := d.RF("host", "trust", "--ca-from", filepath.Join(a.State, "tls")); r.Code == 0 || !strings.Contains(r.Stderr, "managed CA") {
		t.Errorf("copying a managed CA key: %+v", r)
	}
	r = d.RF("host", "trust", "--offline", "--peer-name", "delta")
	if r.Code != 0 || !strings.Contains(r.Stderr, "offline trust") {
		t.Errorf("offline trust: %+v", r)
	}
}
