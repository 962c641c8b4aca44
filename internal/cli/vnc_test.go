package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
)

// vncDaemon is a daemon with one domain, g1, whose display greets each
// stream as QEMU's does; "plain" has none (409). gone makes g1 vanish.
func vncDaemon(t *testing.T) (sock string, gone *atomic.Bool, streams *atomic.Int32) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	gone, streams = &atomic.Bool{}, &atomic.Int32{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/1.0/domains/g1/vnc" && !gone.Load():
			conn, rw, _ := w.(http.Hijacker).Hijack()
			streams.Add(1)
			rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: ringfence-vnc\r\nConnection: Upgrade\r\n\r\nRFB 003.008\n")
			rw.Flush()
			go func() { io.Copy(io.Discard, conn); conn.Close() }()
		case r.URL.Path == "/1.0/domains/g1" && !gone.Load():
			json.NewEncoder(w).Encode(api.Domain{Spec: api.DomainSpec{Name: "g1", VNC: true}, PID: 42, State: api.StateRunning})
		case r.URL.Path == "/1.0/domains/plain/vnc":
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(api.ErrorBody{Error: "plain has no VNC display: add vnc = 1", Class: "conflict"})
		default:
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(api.ErrorBody{Error: "no domain", Class: "not-found"})
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock, gone, streams
}

// The tunnel gives each viewer its own stream over the API, and closes
// itself and every viewer once the domain is gone, saying so.
func TestVNCTunnel(t *testing.T) {
	sock, gone, streams := vncDaemon(t)
	ln, err := listenVNC("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	tn := &vncTunnel{e: &env{stderr: &stderr}, c: client.New(sock), name: "g1", conns: map[net.Conn]bool{}}
	done := make(chan error, 1)
	go func() { done <- tn.serve(context.Background(), ln) }()
	var viewers []net.Conn
	for i := 0; i < 2; i++ {
		v, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		v.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 12)
		if _, err := io.ReadFull(v, b); err != nil || string(b) != "RFB 003.008\n" {
			t.Fatalf("viewer %d: %q %v", i, b, err)
		}
		viewers = append(viewers, v)
	}
	if n := streams.Load(); n != 2 {
		t.Fatalf("%d streams for 2 viewers", n)
	}
	gone.Store(true)
	select {
	case <-done:
	case <-time.After(4 * vncWatchTick):
		t.Fatal("the tunnel outlived its domain")
	}
	if !strings.Contains(stderr.String(), "g1 is gone: tunnel closed") {
		t.Fatalf("stderr %q", stderr.String())
	}
	for i, v := range viewers {
		if _, err := v.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("viewer %d still connected: %v", i, err)
		}
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("the tunnel's port still accepts")
	}
}

// Refusals come before anything listens: a domain without a display, a
// bad --listen.
func TestVNCRefused(t *testing.T) {
	sock, _, _ := vncDaemon(t)
	for _, c := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"vnc", "plain"}, "has no VNC display: add vnc = 1", 1},
		{[]string{"vnc", "nobody"}, "no domain", 3},
		{[]string{"vnc", "g1", "--listen", "nowhere"}, "--listen nowhere", 1},
	} {
		_, stderr, code := run(t, append([]string{"--socket", sock}, c.args...)...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d %q, want %d saying %q", c.args, code, stderr, c.code, c.want)
		}
	}
	ln, err := listenVNC("")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if a := ln.Addr().(*net.TCPAddr); !a.IP.IsLoopback() || a.Port < vncBasePort || a.Port >= vncBasePort+vncDisplays {
		t.Fatalf("the default listener is %s, want loopback from port %d", a, vncBasePort)
	}
}
