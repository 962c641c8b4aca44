package e2e

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/image"
)

// remoteCLI runs the CLI inside the env's namespace with its own remotes
// file and no socket named, as a user on another machine would.
type remoteCLI struct {
	t   *testing.T
	e   *Env
	cfg string
}

func (r remoteCLI) run(args ...string) Result {
	r.t.Helper()
	env := []string{"RINGFENCE_CONFIG=" + r.cfg}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RINGFENCE_") {
			env = append(env, kv)
		}
	}
	return runCLI(r.t, []string{"nsenter", "--net=/run/netns/" + r.e.Netns}, env, args...)
}

func (r remoteCLI) must(args ...string) string {
	r.t.Helper()
	res := r.run(args...)
	if res.Code != 0 {
		r.t.Fatalf("ringfence %s: exit %d\nstdout: %s\nstderr: %s\ndaemon log:\n%s", strings.Join(args, " "), res.Code, res.Stdout, res.Stderr, tail(r.e.DaemonLog(), 3000))
	}
	return res.Stdout
}

// refused runs a CLI call that must fail with want in its error.
func (r remoteCLI) refused(want string, args ...string) {
	r.t.Helper()
	res := r.run(args...)
	if res.Code == 0 || !strings.Contains(res.Stderr, want) {
		r.t.Fatalf("ringfence %s: exit %d, stderr %q; want a failure saying %q", strings.Join(args, " "), res.Code, res.Stderr, want)
	}
}

// TestRemoteAPI: the API over HTTPS with tokens. Tokens are made on the
// socket; a remote is added with its certificate pinned; the verbs work
// over it (create from a client-side file, list, console, top, export to
// (streamed, no scratch file there) and import from the client's files,
// uploads over the cap refused, save to and restore from the client's
// files, migrate, destroy);
// an auditor reads but may not destroy; no, garbled, oversized, revoked
// and expired tokens get 401; the peer listener refuses a token.
func TestRemoteAPI(t *testing.T) {
	port := 41000 + os.Getpid()%20000
	apiAddr, peerAddr := fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", port+1)
	e := NewEnvWith(t, EnvOptions{ServeArgs: []string{"--api-listen", apiAddr, "--listen", peerAddr, guestStorage(), "--max-upload", fmt.Sprint(remoteUploadCap)}})
	e.MustRF("host", "trust", "--peer-name", "h1", "--name", "127.0.0.1")
	secret := func(args ...string) string {
		return strings.TrimSpace(e.MustRF(append([]string{"token", "create"}, args...)...))
	}
	admin, auditor := secret("ops", "--role", "admin"), secret("audit", "--role", "auditor")
	revoked, expired := secret("old", "--role", "admin"), secret("brief", "--role", "admin", "--expires", "1s")
	e.MustRF("token", "revoke", "old")
	if res := e.RF("token", "create", "t1", "--role", "tenant-user"); res.Code == 0 || !strings.Contains(res.Stderr, "needs --tenant") {
		t.Fatalf("a tenant role without a tenant: %+v", res)
	}

	r := remoteCLI{t: t, e: e, cfg: filepath.Join(e.Dir, "remotes.json")}
	url := "https://" + apiAddr
	r.refused("invalid API token", "remote", "add", "bad", url, "--token", "rf_ops_garbage", "--accept-certificate")
	r.refused("revoked", "remote", "add", "bad", url, "--token", revoked, "--accept-certificate")
	if _, err := os.Stat(r.cfg); err == nil {
		t.Fatal("a refused remote was saved")
	}
	r.must("remote", "add", "site", url, "--token", admin, "--accept-certificate")
	r.must("remote", "add", "audit", url, "--token", auditor, "--accept-certificate")
	checkPinned(t, e, r.cfg)
	remoteClientCert(t, e, r, url)

	// The verbs over the remote (switch makes it the default).
	r.must("remote", "switch", "site")
	cfg := e.WriteConfig("rm1", "")
	r.must("create", cfg)
	var ds []api.Domain
	if err := json.Unmarshal([]byte(r.must("list", "--json")), &ds); err != nil || len(ds) != 1 || ds[0].Spec.Name != "rm1" {
		t.Fatalf("list over the remote: %v %v", ds, err)
	}
	if out := r.must("console", "rm1", "--until", image.ReadyLine, "--timeout", "120"); !strings.Contains(out, image.ReadyLine) {
		t.Fatalf("console over the remote: %q", tail(out, 2000))
	}
	if out := r.must("top", "-b"); !strings.Contains(out, "rm1") {
		t.Fatalf("top over the remote: %q", out)
	}
	// The auditor reads, and is refused a destroy with the reason.
	if out := r.must("--remote", "audit", "list"); !strings.Contains(out, "rm1") {
		t.Fatalf("auditor list: %q", out)
	}
	r.refused("needs permission domain.operate", "--remote", "audit", "destroy", "rm1")
	r.refused("needs permission token.manage", "--remote", "audit", "token", "list")
	if out := r.must("token", "list"); !strings.Contains(out, "revoked") || !strings.Contains(out, "ops") {
		t.Fatalf("token list over the remote: %q", out)
	}
	remoteArchive(t, e, r)
	remoteUploadCapped(t, e, apiAddr, admin)
	remoteSave(t, e, r)
	remoteMigrate(t, e, r, fmt.Sprintf("127.0.0.2:%d", port+2))
	// The local socket stays reachable by name.
	if res := r.run("--remote", "local", "--socket", e.Socket, "list"); res.Code != 0 {
		t.Fatalf("--remote local: %+v", res)
	}
	e.MustRF("token", "revoke", "laptop")
	r.refused("revoked", "--remote", "laptop", "list")
	time.Sleep(1100 * time.Millisecond) // "brief" expires
	checkRefusals(t, e, apiAddr, peerAddr, admin, revoked, expired)
}

// remoteClientCert: a token exchanged for the client's certificate; the
// remotes file keeps no secret, and the certificate alone is the token.
func remoteClientCert(t *testing.T, e *Env, r remoteCLI, url string) {
	t.Helper()
	tok := strings.TrimSpace(e.MustRF("token", "create", "laptop", "--role", "operator"))
	r.must("remote", "add", "laptop", url, "--token", tok, "--client-cert", "--accept-certificate")
	if b, _ := os.ReadFile(r.cfg); strings.Contains(string(b), tok) {
		t.Fatalf("the remotes file keeps the token of a certificate remote:\n%s", b)
	}
	r.must("--remote", "laptop", "list")
	var ts []api.APIToken
	if err := json.Unmarshal([]byte(e.MustRF("token", "list", "--json")), &ts); err != nil {
		t.Fatal(err)
	}
	for _, tk := range ts {
		if tk.Name == "laptop" && (len(tk.Certificates) != 1 || tk.LastUsed.IsZero()) {
			t.Fatalf("token laptop: %+v, want one certificate and a last use", tk)
		}
	}
}

// remoteArchive: export writes the archive to the client's file, import
// uploads one: nothing goes through a file the client names on the
// daemon's host.
func remoteArchive(t *testing.T, e *Env, r remoteCLI) {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "rm1.archive")
	remoteExportNoScratch(t, e, r, archive)
	st, err := os.Stat(archive)
	if err != nil || st.Size() < 1024 {
		t.Fatalf("the exported archive on the client: %v %v", st, err)
	}
	r.refused("exists", "export", "rm1", "-o", archive)
	r.refused("needs permission domain.operate", "--remote", "audit", "export", "rm1", "-o", archive+".2")
	e.names = append(e.names, "rm2")
	r.must("import", archive, "--name", "rm2")
	if d := e.Domain("rm2"); d.PID == 0 {
		t.Fatalf("rm2 imported over the remote is not running: %+v", d)
	}
	r.must("destroy", "rm2")
	if left, _ := filepath.Glob(filepath.Join(e.State, "imports", ".*-*.tar.zst")); len(left) != 0 {
		t.Fatalf("scratch archives left on the daemon's host: %v", left)
	}
}

// remoteMigrate: a migration asked over the remote moves rm1 to a peer of
// the remote's host.
func remoteMigrate(t *testing.T, e *Env, r remoteCLI, dstAddr string) {
	t.Helper()
	dst := NewEnvWith(t, EnvOptions{Netns: e.Netns, ServeArgs: []string{"--listen", dstAddr, guestStorage()}})
	dst.JoinTo(e, "dst", "127.0.0.2")
	dst.names = append(dst.names, "rm1")
	r.refused("needs permission domain.migrate", "--remote", "audit", "migrate", "rm1", dstAddr)
	r.must("migrate", "rm1", dstAddr)
	if d := dst.Domain("rm1"); d.PID == 0 {
		t.Fatalf("rm1 is not running on the destination: %+v", d)
	}
	if ds := e.List(); len(ds) != 0 {
		t.Fatalf("domains left on the source after the migration: %v", ds)
	}
	dst.MustRF("destroy", "rm1")
}

// checkPinned: the remotes file is 0600 and pins the daemon's certificate.
func checkPinned(t *testing.T, e *Env, cfg string) {
	t.Helper()
	st, err := os.Stat(cfg)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("remotes file: %v %v, want 0600", st.Mode(), err)
	}
	pemb, err := os.ReadFile(filepath.Join(e.State, "api", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemb)
	sum := sha256.Sum256(blk.Bytes)
	b, _ := os.ReadFile(cfg)
	if !strings.Contains(string(b), hex.EncodeToString(sum[:])) {
		t.Fatalf("the remotes file does not pin the daemon's certificate:\n%s", b)
	}
}

// checkRefusals: raw HTTPS calls with bad credentials get 401 with one
// message; the peer listener refuses even a good token.
func checkRefusals(t *testing.T, e *Env, apiAddr, peerAddr, admin, revoked, expired string) {
	t.Helper()
	c := peerHTTP(t, e.Netns, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	do := func(addr, authz string) (int, string) {
		req, _ := http.NewRequest("GET", "https://"+addr+api.Version+"/domains", nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", addr, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, k := range []struct{ what, authz, want string }{
		{"no token", "", "needs a token"},
		{"garbled", "Bearer rf_ops_AAAA", "invalid API token"},
		{"another token's name", "Bearer rf_nobody" + admin[len("rf_ops"):], "invalid API token"},
		{"not bearer", "Basic " + admin, "want Bearer"},
		{"oversized", "Bearer " + strings.Repeat("A", 8192), "over 512 bytes"},
		{"revoked", "Bearer " + revoked, "revoked"},
		{"expired", "Bearer " + expired, "expired"},
	} {
		if code, body := do(apiAddr, k.authz); code != http.StatusUnauthorized || !strings.Contains(body, k.want) {
			t.Errorf("%s: %d %s, want 401 saying %q", k.what, code, body, k.want)
		}
	}
	if code, body := do(apiAddr, "Bearer "+admin); code != http.StatusOK {
		t.Fatalf("the admin token after the refusals: %d %s", code, body)
	}
	if code, body := do(peerAddr, "Bearer "+admin); code != http.StatusUnauthorized || !strings.Contains(body, "not accepted on the peer listener") {
		t.Errorf("a token on the peer listener: %d %s", code, body)
	}
}
