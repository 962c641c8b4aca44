package daemon

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/client"
	"github.com/ringfence/ringfence/internal/domain"
	"github.com/ringfence/ringfence/internal/engine/fake"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/store/memstore"
)

// streamServer is remoteServer with a domain manager on the fake engine
// running "vm" (a VNC display) and "plain" (none); each prints a line.
func streamServer(t *testing.T) (*Server, map[string]string, *fake.Engine) {
	t.Helper()
	s, sec := remoteServer(t)
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	os.WriteFile(kernel, []byte("k"), 0o644)
	bootID := filepath.Join(dir, "boot_id")
	os.WriteFile(bootID, []byte("11111111-2222-3333-4444-555555555555\n"), 0o644)
	eng := fake.New()
	s.mgr = domain.New(domain.Options{Store: memstore.New(), Engine: eng, Ledger: host.NewLedger(4096, 0, 4, 1), Accel: host.Accel{Name: "tcg"},
		RunDir: filepath.Join(dir, "run"), LogDir: filepath.Join(dir, "log"), StateDir: filepath.Join(dir, "state"), BootIDFile: bootID, HostCPUs: 4,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.mgr.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, sp := range []api.DomainSpec{{Name: "vm", Kernel: kernel, VNC: true}, {Name: "plain", Kernel: kernel}} {
		if _, err := s.mgr.Create(context.Background(), api.CreateRequest{Spec: sp}); err != nil {
			t.Fatal(err)
		}
		eng.Find(sp.Name).Print("booted " + sp.Name + "\n")
	}
	t.Cleanup(func() {
		for _, n := range []string{"vm", "plain"} {
			s.mgr.Destroy(context.Background(), n)
		}
	})
	tok, _ := s.tokens.Create(context.Background(), api.APITokenRequest{Name: "ops", Role: "operator"})
	sec["operator"] = tok.Secret
	return s, sec, eng
}

// wsDial opens a WebSocket to path with the given headers and
// subprotocols.
func wsDial(url string, h http.Header, protos ...string) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h, Subprotocols: protos})
}

// readUntil reads binary messages until want has appeared.
func readUntil(t *testing.T, c *websocket.Conn, want string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got strings.Builder
	for !strings.Contains(got.String(), want) {
		typ, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("reading for %q: %v (so far %q)", want, err, got.String())
		}
		if typ != websocket.MessageBinary {
			t.Fatalf("a %v message; the streams send binary ones", typ)
		}
		got.Write(b)
	}
	return got.String()
}

// TestStreamsWebSocket: the console and the VNC display over WebSocket on
// the API listener's gate: the console replays its history and streams
// live output; the display relays RFB; a browser's token offered as a
// subprotocol is taken and the handshake selects "ringfence"; the
// auditor gets 403 on both, a domain without a display 409.
func TestStreamsWebSocket(t *testing.T) {
	s, sec, eng := streamServer(t)
	srv := httptest.NewServer(s.remoteAuth(s.handler(auth.UserRoles(), nil)))
	defer srv.Close()
	base := "ws" + strings.TrimPrefix(srv.URL, "http") + "/1.0/domains/"
	bearer := http.Header{"Authorization": {"Bearer " + sec["operator"]}}

	con, _, err := wsDial(base+"vm/console", bearer)
	if err != nil {
		t.Fatal(err)
	}
	defer con.CloseNow()
	readUntil(t, con, "booted vm")
	eng.Find("vm").Print("live line\n")
	readUntil(t, con, "live line")
	if err := con.Write(context.Background(), websocket.MessageText, []byte("typed\n")); err != nil {
		t.Fatalf("a text message from xterm.js: %v", err)
	}

	vnc, resp, err := wsDial(base+"vm/vnc", nil, wsProtocol, wsTokenPrefix+sec["operator"])
	if err != nil {
		t.Fatalf("VNC with the token as a subprotocol: %v", err)
	}
	defer vnc.CloseNow()
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != wsProtocol {
		t.Fatalf("the handshake selected %q, want %q", got, wsProtocol)
	}
	readUntil(t, vnc, "RFB 003.008\n")

	for _, c := range []struct {
		what, path string
		h          http.Header
		protos     []string
		code       int
	}{
		{"auditor console", "vm/console", http.Header{"Authorization": {"Bearer " + sec["aud2"]}}, nil, 403},
		{"auditor vnc", "vm/vnc", nil, []string{wsProtocol, wsTokenPrefix + sec["aud2"]}, 403},
		{"no display", "plain/vnc", bearer, nil, 409},
		{"no token", "vm/vnc", nil, nil, 401},
		{"a bad subprotocol token", "vm/vnc", nil, []string{wsProtocol, wsTokenPrefix + "rf_ops_nope"}, 401},
		{"no domain", "nobody/vnc", bearer, nil, 404},
	} {
		c2, resp, err := wsDial(base+c.path, c.h, c.protos...)
		if err == nil {
			c2.CloseNow()
			t.Errorf("%s: the handshake succeeded", c.what)
			continue
		}
		if resp == nil || resp.StatusCode != c.code {
			t.Errorf("%s: %v, want %d", c.what, err, c.code)
		}
	}
}

// TestStreamsOrigin: a client certificate is ambient (the browser sends
// it whatever page asks), so a WebSocket authenticated by one must come
// from the API's own origin; a token is the page's own, so any origin.
func TestStreamsOrigin(t *testing.T) {
	s, _, _ := streamServer(t)
	for _, c := range []struct {
		kind auth.Kind
		ok   bool
	}{{auth.Cert, false}, {auth.Token, true}} {
		h := s.handler(auth.UserRoles(), nil)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := auth.Principal{Kind: c.kind, Name: "ops", Role: auth.Operator, Remote: r.RemoteAddr}
			h.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), p)))
		}))
		url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/1.0/domains/vm/vnc"
		conn, _, err := wsDial(url, http.Header{"Origin": {"https://elsewhere.example"}})
		if (err == nil) != c.ok {
			t.Errorf("%s from another origin: %v, want allowed %v", c.kind, err, c.ok)
		}
		if err == nil {
			conn.CloseNow()
		}
		srv.Close()
	}
}

// TestStreamsRawUpgrade: the CLI's raw upgrade on the unix socket still
// works for the console and now the display; a stream ends when its
// domain is destroyed.
func TestStreamsRawUpgrade(t *testing.T) {
	s, _, _ := streamServer(t)
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := s.server(s.handler(socketRoles, nil), adminConn)
	go srv.Serve(ln)
	defer srv.Close()
	c := client.New(sock)
	ctx := context.Background()
	con, err := c.Console(ctx, "vm", true)
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	vnc, err := c.VNC(ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	defer vnc.Close()
	for what, conn := range map[string]net.Conn{"console": con, "vnc": vnc} {
		want := map[string]string{"console": "booted vm", "vnc": "RFB 003.008\n"}[what]
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, len(want))
		if _, err := io.ReadFull(conn, b); err != nil || string(b) != want {
			t.Fatalf("%s: %q %v, want %q", what, b, err, want)
		}
	}
	if _, err := c.VNC(ctx, "plain"); err == nil || !strings.Contains(err.Error(), "has no VNC display") {
		t.Fatalf("VNC of a domain without one: %v", err)
	}
	if err := s.mgr.Destroy(ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	vnc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(vnc); err != nil {
		t.Fatalf("the display's stream did not end with its domain: %v", err)
	}
}
