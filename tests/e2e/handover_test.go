package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/peer"
)

// listenIn opens a TCP listener inside namespace ns.
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	inNetns(t, ns, func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	t.Cleanup(func() { l.Close() })
	return l
}

// fakeDestination is a peer with a certificate from the source's CA that
// follows the migration protocol up to the handover: it takes the stream
// (and throws it away), and once the source says "go" it does what
// handover says with the control channel. It stands in for a destination
// that dies, or fails, at the worst moment.
func fakeDestination(t *testing.T, src *Env, addr, name string, handover func(ctrl net.Conn)) {
	t.Helper()
	// A real host joins src's cluster for its certificate, then stops: the
	// fake serves with that identity.
	host := NewEnvWith(t, EnvOptions{Netns: src.Netns})
	ip, _, _ := net.SplitHostPort(addr)
	host.JoinTo(src, name, ip)
	host.StopDaemon()
	tr, err := peer.Open(peer.Files{Dir: filepath.Join(host.State, "tls")}, "", slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	l := tls.NewListener(listenIn(t, src.Netns, addr), tr.ServerConfig())
	dataIn := make(chan struct{}, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", req.Header.Get("Upgrade"))
				if strings.Contains(req.URL.Path, "/migrate/data/") {
					dataIn <- struct{}{}
					io.Copy(io.Discard, br) // "loading"
					return
				}
				if _, err := br.ReadBytes('\n'); err != nil { // the header
					return
				}
				fmt.Fprintln(c, `{"ok":true,"token":"0123456789abcdef"}`)
				select {
				case <-dataIn:
				case <-time.After(20 * time.Second):
					return
				}
				fmt.Fprintln(c, `{"listening":true}`)
				for {
					line, err := br.ReadBytes('\n')
					if err != nil {
						return
					}
					var m map[string]any
					if json.Unmarshal(line, &m) == nil && m["go"] == true {
						handover(c)
						return
					}
				}
			}(c)
		}
	}()
}

// TestMigrationHandover: once the source has handed a guest over, only
// the destination's word decides. Silence leaves the source copy paused
// (it may run there: never on two hosts); an explicit failure resumes it.
func TestMigrationHandover(t *testing.T) {
	port := 20000 + os.Getpid()%20000 + 5
	srcAddr := fmt.Sprintf("127.0.0.1:%d", port)
	src := NewEnvWith(t, EnvOptions{ServeArgs: []string{"--listen", srcAddr}})
	src.MustRF("host", "trust", "--peer-name", "src", "--name", "127.0.0.1")
	vanish := fmt.Sprintf("127.0.0.5:%d", port+1)
	refuse := fmt.Sprintf("127.0.0.6:%d", port+2)
	fakeDestination(t, src, vanish, "vanish", func(ctrl net.Conn) {})
	fakeDestination(t, src, refuse, "refuse", func(ctrl net.Conn) {
		fmt.Fprintln(ctrl, `{"error":"the test's destination could not start the guest"}`)
	})
	c := src.Boot("mover", "")
	c.Send(`i=0; while true; do echo tick$i; i=$((i+1)); usleep 10000; done &`)
	c.WaitFor("tick20", 0, 20*time.Second)

	// The destination goes silent after "go": the source must not guess.
	r := src.RF("migrate", "mover", vanish)
	if r.Code == 0 || !strings.Contains(r.Stderr, "lost contact with the destination after handing mover over") || !strings.Contains(r.Stderr, "paused here") {
		t.Fatalf("migration to a destination that vanished at the handover: %+v", r)
	}
	d := src.Domain("mover")
	if d.PID == 0 || d.State != api.StatePaused {
		t.Fatalf("after an unconfirmed handover the source copy is %q (pid %d), want paused and kept", d.State, d.PID)
	}
	off := len(c.Output())
	time.Sleep(300 * time.Millisecond)
	if strings.Contains(c.Output()[off:], "tick") {
		t.Fatal("the source copy runs after an unconfirmed handover")
	}
	// The admin knows it does not run elsewhere: unpause, and it goes on.
	before := lastTick(t, c.Output())
	src.MustRF("unpause", "mover")
	c.WaitFor(fmt.Sprintf("tick%d\r", before+5), off, 10*time.Second)

	// The destination answers with an error after "go": it did not run
	// the guest, so the source resumes its own at once.
	r = src.RF("migrate", "mover", refuse)
	if r.Code == 0 || !strings.Contains(r.Stderr, "the destination did not take over") || !strings.Contains(r.Stderr, "keeps running here") {
		t.Fatalf("migration to a destination that failed at the handover: %+v", r)
	}
	if d := src.Domain("mover"); d.State != api.StateRunning && d.State != api.StateBlocked {
		t.Fatalf("after a refused handover the source copy is %q, want it running", d.State)
	}
	off = len(c.Output())
	c.WaitFor("tick", off, 5*time.Second)
}
