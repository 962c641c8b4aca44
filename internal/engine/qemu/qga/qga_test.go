package qga

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeAgent serves one behaviour on a unix socket, as QEMU's chardev
// would relay a guest agent (or none).
func fakeAgent(t *testing.T, serve func(r *bufio.Reader, c net.Conn)) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qga.sock")
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); serve(bufio.NewReader(c), c) }()
		}
	}()
	return p
}

// agent answers guest-sync-delimited (after junk) and then answers each
// command with replies[cmd].
func agent(replies map[string]string) func(*bufio.Reader, net.Conn) {
	return func(r *bufio.Reader, c net.Conn) {
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var req struct {
				Execute   string                     `json:"execute"`
				Arguments map[string]json.RawMessage `json:"arguments"`
			}
			json.Unmarshal(line, &req)
			if req.Execute == "guest-sync-delimited" {
				fmt.Fprintf(c, "{\"return\": 7}\n\xff{\"return\": %s}\n", req.Arguments["id"])
				continue
			}
			fmt.Fprintln(c, replies[req.Execute])
		}
	}
}

func TestClient(t *testing.T) {
	live := fakeAgent(t, agent(map[string]string{
		"guest-ping":                   `{"return": {}}`,
		"guest-fsfreeze-freeze":        `{"return": 2}`,
		"guest-set-user-password":      `{"error": {"class": "GenericError", "desc": "user nobody does not exist"}}`,
		"guest-network-get-interfaces": `{"return": [{"name": "eth0", "hardware-address": "00:16:3e:00:00:01", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "10.0.0.2", "prefix": 24}]}]}`,
	}))
	silent := fakeAgent(t, func(r *bufio.Reader, c net.Conn) { r.ReadBytes('\n'); time.Sleep(5 * time.Second) })
	for _, c := range []struct {
		name string
		path string
		call func(Client) (string, error)
		want string // in the result, or in the error
	}{
		{"ping", live, func(cl Client) (string, error) { return "ok", cl.Ping(context.Background()) }, "ok"},
		{"freeze", live, func(cl Client) (string, error) { n, err := cl.Freeze(context.Background()); return fmt.Sprint(n), err }, "2"},
		{"interfaces", live, func(cl Client) (string, error) {
			ifs, err := cl.Interfaces(context.Background())
			return fmt.Sprint(ifs), err
		}, "10.0.0.2 24"},
		{"error answer", live, func(cl Client) (string, error) {
			return "", cl.SetPassword(context.Background(), "nobody", "x")
		}, "user nobody does not exist"},
		{"silent agent", silent, func(cl Client) (string, error) { return "", cl.Ping(context.Background()) }, ErrNoAgent.Error()},
		{"no socket", filepath.Join(t.TempDir(), "none"), func(cl Client) (string, error) { return "", cl.Ping(context.Background()) }, "guest agent socket"},
	} {
		start := time.Now()
		got, err := c.call(Client{Path: c.path, Timeout: 300 * time.Millisecond})
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
		if time.Since(start) > 3*time.Second {
			t.Errorf("%s took %s: the timeout must bound every call", c.name, time.Since(start))
		}
	}
}

// A cancelled context ends a call at once, whatever the timeout.
func TestClientContext(t *testing.T) {
	silent := fakeAgent(t, func(r *bufio.Reader, c net.Conn) { r.ReadBytes('\n'); time.Sleep(5 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Client{Path: silent, Timeout: time.Minute}.Ping(ctx)
	if !errors.Is(err, ErrNoAgent) || time.Since(start) > 3*time.Second {
		t.Errorf("ping with a cancelled context: %v after %s", err, time.Since(start))
	}
}

// A present agent may take the caller's whole deadline for work in the
// guest (a password change under load); only the handshake is short.
func TestClientSlowWork(t *testing.T) {
	slow := fakeAgent(t, func(r *bufio.Reader, c net.Conn) {
		replies := agent(map[string]string{"guest-set-user-password": `{"return": {}}`})
		pr, pw := net.Pipe()
		go func() {
			br := bufio.NewReader(pr)
			for {
				line, err := br.ReadBytes('\n')
				if err != nil {
					return
				}
				if strings.Contains(string(line), "return\": {}") {
					time.Sleep(time.Second)
				}
				c.Write(line)
			}
		}()
		replies(r, pw)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := (Client{Path: slow, Timeout: 300 * time.Millisecond}).SetPassword(ctx, "root", "x"); err != nil {
		t.Errorf("a slow password change within the caller's deadline: %v", err)
	}
}
