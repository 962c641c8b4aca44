package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// openFDs counts a process's open descriptors.
func openFDs(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// TestListenerFlood: plain and half-open connections by the thousand, from
// fifty addresses, while the daemon is also short of descriptors. The
// listeners shed what is over their caps, keep accepting through errors
// (the review found the peer listener closed for good after one), cut off
// clients that stall, and a migration succeeds afterwards.
func TestListenerFlood(t *testing.T) {
	port := 23000 + os.Getpid()%20000
	srcAddr, dstAddr := fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.2:%d", port+1)
	src := NewEnvWith(t, EnvOptions{ServeArgs: []string{"--listen", srcAddr}})
	src.MustRF("host", "trust", "--peer-name", "src", "--name", "127.0.0.1")
	dst := NewEnvWith(t, EnvOptions{Netns: src.Netns, ServeArgs: []string{"--listen", dstAddr, guestStorage(), "--read-timeout", "2s", "--idle-timeout", "2s"}})
	dst.JoinTo(src, "dst", "127.0.0.2")
	c := src.Boot("mover", "")
	c.Send(`i=0; while true; do echo tick$i; i=$((i+1)); usleep 20000; done &`)
	c.WaitFor("tick10", 0, 20*time.Second)
	dpid := dst.daemon.Process.Pid
	base := openFDs(dpid)

	// Short of descriptors: accept fails with EMFILE for a while.
	mustRun(t, "prlimit", "--pid", strconv.Itoa(dpid), "--nofile=400:20000")
	var conns []net.Conn
	// Dialled on the namespace's thread itself (a goroutine would not be
	// in the namespace): 50 sources x 60 connections.
	inNetns(t, src.Netns, func() error {
		for s := 0; s < 50; s++ {
			d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+s))}}
			for i := 0; i < 60; i++ {
				cn, err := d.Dial("tcp", dstAddr)
				if err != nil {
					continue
				}
				if i%10 == 0 {
					cn.Write([]byte{0x16, 0x03, 0x01}) // the start of a TLS record, then nothing
				}
				conns = append(conns, cn)
			}
		}
		return nil
	})
	time.Sleep(time.Second)
	peak := openFDs(dpid)
	t.Logf("flood: %d connections open on our side; daemon fds %d (before %d)", len(conns), peak, base)
	if peak > 400 {
		t.Fatalf("the daemon holds %d descriptors over a limit of 400", peak)
	}
	mustRun(t, "prlimit", "--pid", strconv.Itoa(dpid), "--nofile=20000:20000")
	time.Sleep(500 * time.Millisecond)
	if n := openFDs(dpid); n > base+1024+64 {
		t.Fatalf("with the limit raised the daemon holds %d descriptors: the caps do not hold", n)
	}
	if !strings.Contains(dst.DaemonLog(), "accept failed; retrying") && !strings.Contains(dst.DaemonLog(), "connection cap reached") {
		t.Errorf("neither an accept error nor the cap was logged")
	}
	// The flood ends; stalled connections are cut off by the deadlines.
	for _, cn := range conns {
		cn.Close()
	}
	dst.Await("the daemon to let go of the flood", 20*time.Second, func() bool { return openFDs(dpid) <= base+8 })

	// The unix API: stalled request bodies are cut off after the read
	// timeout; connections over the cap are closed at once.
	var ux []net.Conn
	for i := 0; i < 1100; i++ {
		cn, err := net.Dial("unix", dst.Socket)
		if err != nil {
			t.Fatalf("unix connection %d: %v", i, err)
		}
		if i%2 == 0 {
			io.WriteString(cn, "POST /1.0/domains HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
		}
		ux = append(ux, cn)
	}
	closed := func(cs []net.Conn, within time.Duration) int {
		var n int
		var wg sync.WaitGroup
		var m sync.Mutex
		for _, cn := range cs {
			wg.Add(1)
			go func(cn net.Conn) {
				defer wg.Done()
				cn.SetReadDeadline(time.Now().Add(within))
				_, err := io.Copy(io.Discard, cn)
				if err == nil || !os.IsTimeout(err) {
					m.Lock()
					n++
					m.Unlock()
				}
			}(cn)
		}
		wg.Wait()
		return n
	}
	if n := closed(ux, 6*time.Second); n != len(ux) {
		t.Errorf("%d of %d stalled unix connections were cut off within 6 s (read timeout 2 s)", n, len(ux))
	}
	for _, cn := range ux {
		cn.Close()
	}
	dst.MustRF("list")

	// And the peer listener still serves: the guest moves.
	src.MustRF("migrate", "mover", dstAddr)
	dc := dst.Console("mover")
	dc.WaitFor("tick", 0, 10*time.Second)
	if out, _ := exec.Command("ss", "-N", dst.Netns, "-tln").CombinedOutput(); !strings.Contains(string(out), strconv.Itoa(port+1)) {
		t.Errorf("the peer port is not listening any more:\n%s", out)
	}
}
