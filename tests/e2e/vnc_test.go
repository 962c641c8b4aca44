package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/des"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ringfence/ringfence/internal/image"
)

// TestConsoleVNCWebSocket: a vnc = 1 HVM guest over the remote HTTPS API
// with tokens. Its serial console over WebSocket shows the guest's ready
// line and runs a command; its display over WebSocket speaks RFB (VNC
// authentication with the file's vncpasswd, ServerInit, a framebuffer
// update), refuses a wrong password, and is served by QEMU as its own
// user, sandboxed, on a unix socket, its password on no command line;
// `ringfence vnc` tunnels it to a local port a raw TCP client reaches;
// the auditor gets 403 on both routes, a domain without a display 409;
// after destroy no socket file and no listener is left.
func TestConsoleVNCWebSocket(t *testing.T) {
	apiAddr := fmt.Sprintf("127.0.0.1:%d", 44000+os.Getpid()%20000)
	e := NewEnvWith(t, EnvOptions{ServeArgs: []string{"--api-listen", apiAddr}})
	operator := strings.TrimSpace(e.MustRF("token", "create", "ops", "--role", "operator"))
	auditor := strings.TrimSpace(e.MustRF("token", "create", "aud", "--role", "auditor"))
	const pass = "rf-pw-42"

	cfg := e.WriteConfig("vnc1", "type = 'hvm'\nvnc = 1\nvncpasswd = '"+pass+"'\nvnclisten = '0.0.0.0'\nvncunused = 1")
	res := e.RF("create", cfg)
	if res.Code != 0 {
		t.Fatalf("create: %+v", res)
	}
	n := 0 // the harness's file has warnings of its own (console=hvc0)
	for _, l := range strings.Split(res.Stderr, "\n") {
		if strings.Contains(l, "warning: \"vnc") {
			n++
		}
	}
	if n != 1 || !strings.Contains(res.Stderr, `"vnclisten", "vncunused" are ignored`) || !strings.Contains(res.Stderr, "ringfence vnc vnc1") {
		t.Fatalf("want one VNC warning naming vnclisten and vncunused and `ringfence vnc vnc1`, got %d:\n%s", n, res.Stderr)
	}
	e.MustRF("create", e.WriteConfig("plain1", ""))
	checkQEMUDisplay(t, e, "vnc1", pass)

	ws := wsURL{e: e, base: "wss://" + apiAddr + "/1.0/domains/"}
	con := watchConsole(t, ws.stream(t, "vnc1/console", operator))
	con.WaitFor(image.ReadyLine, 0, 120*time.Second)
	con.Do("echo over-ws-$((6*7))", "over-ws-42", 60*time.Second)

	w, h := rfbSession(t, ws.stream(t, "vnc1/vnc", operator), pass)
	if w == 0 || h == 0 {
		t.Fatalf("framebuffer %dx%d", w, h)
	}
	if err := rfbAuth(ws.stream(t, "vnc1/vnc", operator), "wrong-pw"); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("a wrong VNC password: %v, want a refusal", err)
	}

	for _, c := range []struct{ what, path, token, want string }{
		{"auditor console", "vnc1/console", auditor, "403"},
		{"auditor vnc", "vnc1/vnc", auditor, "403"},
		{"no display", "plain1/vnc", operator, "409"},
	} {
		if got := ws.refused(t, c.path, c.token); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %s, want %s", c.what, got, c.want)
		}
	}
	if got := ws.refused(t, "plain1/vnc", operator); !strings.Contains(got, "add vnc = 1") {
		t.Errorf("the 409 does not say how to enable VNC: %s", got)
	}

	r := remoteCLI{t: t, e: e, cfg: filepath.Join(e.Dir, "remotes.json")}
	r.must("remote", "add", "site", "https://"+apiAddr, "--token", operator, "--accept-certificate")
	tunnelVNC(t, e, r, "vnc1")
}

// checkQEMUDisplay: the domain's QEMU serves VNC on a unix socket in its
// run dir, runs as its own user under the seccomp sandbox, and no
// password reaches its command line (which every host user can read),
// nor a view of the domain.
func checkQEMUDisplay(t *testing.T, e *Env, name, pass string) {
	t.Helper()
	d := e.Domain(name)
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", d.PID))
	argv := strings.ReplaceAll(string(cmd), "\x00", " ")
	sock := filepath.Join(e.Dir, "run", "domains", name, "vnc.sock")
	for _, want := range []string{"-vnc unix:" + sock + ",", "password=on", "-sandbox on", "-runas"} {
		if !strings.Contains(argv, want) {
			t.Fatalf("QEMU's argv lacks %q:\n%s", want, argv)
		}
	}
	if strings.Contains(argv, pass) || regexp.MustCompile(`-vnc [^u]|:59\d\d`).MatchString(argv) {
		t.Fatalf("QEMU's argv shows the password or a TCP display:\n%s", argv)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("the VNC socket %s: %v", sock, err)
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.PID))
	if m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)`).FindSubmatch(status); m == nil || string(m[1]) == "0" {
		t.Fatalf("QEMU runs as root, not its own user: %s", m)
	}
	if out := e.MustRF("list", "--json"); strings.Contains(out, pass) || !strings.Contains(out, `"vncpasswd": "********"`) {
		t.Fatalf("list shows the VNC password, or not that one is set:\n%s", out)
	}
}

// wsURL opens the API's WebSockets from inside the env's namespace.
type wsURL struct {
	e    *Env
	base string
}

func (u wsURL) dial(path, token string) (*websocket.Conn, *http.Response, error) {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13},
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = inNetnsErr(u.e.Netns, func() error {
				c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return websocket.Dial(ctx, u.base+path, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr},
		HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
}

// stream is an open WebSocket as a byte stream (binary messages).
func (u wsURL) stream(t *testing.T, path, token string) net.Conn {
	t.Helper()
	c, _, err := u.dial(path, token)
	if err != nil {
		t.Fatalf("WebSocket %s: %v", path, err)
	}
	conn := websocket.NetConn(context.Background(), c, websocket.MessageBinary)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// refused is the status and body of a handshake that must fail.
func (u wsURL) refused(t *testing.T, path, token string) string {
	t.Helper()
	c, resp, err := u.dial(path, token)
	if err == nil {
		c.CloseNow()
		t.Fatalf("WebSocket %s: the handshake succeeded", path)
	}
	if resp == nil {
		t.Fatalf("WebSocket %s: %v", path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

// rfbAuth speaks RFB 3.8 up to the security result: version, security
// type 2 (VNC authentication: the server's 16-byte challenge encrypted
// with DES under the password), result. The connection is then ready
// for ClientInit.
func rfbAuth(c net.Conn, password string) error {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	ver := make([]byte, 12)
	if _, err := io.ReadFull(c, ver); err != nil || string(ver) != "RFB 003.008\n" {
		return fmt.Errorf("ProtocolVersion %q: %v", ver, err)
	}
	c.Write([]byte("RFB 003.008\n"))
	n := []byte{0}
	if _, err := io.ReadFull(c, n); err != nil || n[0] == 0 {
		return fmt.Errorf("security types: %d %v", n[0], err)
	}
	types := make([]byte, n[0])
	io.ReadFull(c, types)
	if !bytes.Contains(types, []byte{2}) {
		return fmt.Errorf("security types %v: no VNC authentication (2)", types)
	}
	c.Write([]byte{2})
	challenge := make([]byte, 16)
	if _, err := io.ReadFull(c, challenge); err != nil {
		return fmt.Errorf("challenge: %v", err)
	}
	c.Write(vncResponse(password, challenge))
	result := make([]byte, 4)
	if _, err := io.ReadFull(c, result); err != nil {
		return fmt.Errorf("SecurityResult: %v", err)
	}
	if binary.BigEndian.Uint32(result) != 0 {
		reason, _ := io.ReadAll(io.LimitReader(c, 256))
		return fmt.Errorf("authentication failed: %q", reason)
	}
	return nil
}

// vncResponse is VNC authentication's answer: the challenge encrypted
// with DES keyed by the password (8 bytes, NUL-padded), each key byte's
// bits reversed, as RFB's reference implementation does.
func vncResponse(password string, challenge []byte) []byte {
	key := make([]byte, 8)
	copy(key, password)
	for i, b := range key {
		var r byte
		for j := 0; j < 8; j++ {
			r = r<<1 | (b>>j)&1
		}
		key[i] = r
	}
	block, _ := des.NewCipher(key)
	out := make([]byte, 16)
	block.Encrypt(out[:8], challenge[:8])
	block.Encrypt(out[8:], challenge[8:])
	return out
}

// rfbSession authenticates, initialises (shared) and receives one
// framebuffer update; it returns the framebuffer's size.
func rfbSession(t *testing.T, c net.Conn, password string) (int, int) {
	t.Helper()
	if err := rfbAuth(c, password); err != nil {
		t.Fatalf("RFB with the right password: %v", err)
	}
	c.Write([]byte{1}) // ClientInit: share the display
	si := make([]byte, 24)
	if _, err := io.ReadFull(c, si); err != nil {
		t.Fatalf("ServerInit: %v", err)
	}
	w, h := binary.BigEndian.Uint16(si[0:]), binary.BigEndian.Uint16(si[2:])
	name := make([]byte, binary.BigEndian.Uint32(si[20:]))
	io.ReadFull(c, name)
	req := []byte{3, 0, 0, 0, 0, 0, 0, 0, 0, 0} // FramebufferUpdateRequest, all of it
	binary.BigEndian.PutUint16(req[6:], w)
	binary.BigEndian.PutUint16(req[8:], h)
	c.Write(req)
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(c, hdr); err != nil || hdr[0] != 0 || binary.BigEndian.Uint16(hdr[2:]) == 0 {
		t.Fatalf("FramebufferUpdate header %v: %v (want type 0 with rectangles)", hdr, err)
	}
	return int(w), int(h)
}

// tunnelVNC: `ringfence vnc NAME --listen 127.0.0.1:0` over the remote
// prints where to connect; a raw TCP client there gets RFB's greeting
// through the API; destroying the domain ends the tunnel by itself, and
// nothing is left listening nor in the run dir.
func tunnelVNC(t *testing.T, e *Env, r remoteCLI, name string) {
	t.Helper()
	cmd := exec.Command("nsenter", "--net=/run/netns/"+e.Netns, binPath, "--remote", "site", "vnc", name, "--listen", "127.0.0.1:0")
	cmd.Env = r.env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL) // only this test's own tunnel
		<-exited
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	m := regexp.MustCompile(`connect a VNC viewer to (127\.0\.0\.1:\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("ringfence vnc printed %q (%v); stderr %s", line, err, stderr.String())
	}
	dial := func() (net.Conn, error) {
		var c net.Conn
		err := inNetnsErr(e.Netns, func() (err error) {
			c, err = net.DialTimeout("tcp", m[1], 5*time.Second)
			return err
		})
		return c, err
	}
	c, err := dial()
	if err != nil {
		t.Fatalf("dialing the tunnel at %s: %v", m[1], err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	greeting := make([]byte, 12)
	if _, err := io.ReadFull(c, greeting); err != nil || string(greeting) != "RFB 003.008\n" {
		t.Fatalf("through the tunnel: %q %v; stderr %s", greeting, err, stderr.String())
	}
	c.Close()

	e.MustRF("destroy", name)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the tunnel still runs 30 s after its domain was destroyed; stderr %s", stderr.String())
	}
	if !strings.Contains(stderr.String(), name+" is gone: tunnel closed") {
		t.Errorf("the tunnel did not say why it closed: %s", stderr.String())
	}
	if c, err := dial(); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after the tunnel ended", m[1])
	}
	if _, err := os.Stat(filepath.Join(e.Dir, "run", "domains", name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the run dir (and its vnc.sock) is left after destroy: %v", err)
	}
}
