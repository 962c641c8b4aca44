package chaos

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestLinkValidate(t *testing.T) {
	for _, tc := range []struct {
		l   Link
		bad string
	}{
		{Lossy, ""},
		{Link{}, ""},
		{Link{DropP: 1.5}, "DropP 1.5"},
		{Link{StallP: -0.1}, "StallP -0.1"},
		{Link{DelayMin: time.Second, DelayMax: time.Millisecond}, "min <= max"},
	} {
		err := tc.l.Validate()
		if tc.bad == "" && err != nil || tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("%+v: %v, want %q", tc.l, err, tc.bad)
		}
	}
}

// relayPair relays a pipe through a proxy's link: what is written to in
// comes out of out.
func relayPair(l Link) (in, out net.Conn, p *Proxy) {
	p = &Proxy{rng: rand.New(rand.NewPCG(1, 2))}
	p.link.Store(&l)
	inA, inB := net.Pipe()
	outA, outB := net.Pipe()
	cut := make(chan struct{})
	stop := func() {
		select {
		case <-cut:
		default:
			close(cut)
			inB.Close()
			outA.Close()
		}
	}
	go p.relay(outA, inB, cut, stop)
	return inA, outB, p
}

func TestRelay(t *testing.T) {
	for _, tc := range []struct {
		name     string
		link     Link
		arrives  bool
		atLeast  time.Duration
		counters string
	}{
		{"a clean link", Link{}, true, 0, "0 cut"},
		{"a delay", Link{DelayMin: 80 * time.Millisecond, DelayMax: 80 * time.Millisecond}, true, 80 * time.Millisecond, "0 cut"},
		{"a stall", Link{StallP: 1, Stall: 150 * time.Millisecond}, true, 150 * time.Millisecond, "1 stalls"},
		{"a spike", Link{SpikeP: 1, Spike: 100 * time.Millisecond}, true, 100 * time.Millisecond, "1 spikes"},
		{"a cut", Link{DropP: 1}, false, 0, "1 cut"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, out, p := relayPair(tc.link)
			defer in.Close()
			defer out.Close()
			start := time.Now()
			go fmt.Fprintf(in, "hello %s\n", tc.name)
			line, err := bufio.NewReader(out).ReadString('\n')
			took := time.Since(start)
			if tc.arrives && (err != nil || line != "hello "+tc.name+"\n") {
				t.Fatalf("read %q, %v", line, err)
			}
			if !tc.arrives && err == nil {
				t.Fatalf("a cut link delivered %q", line)
			}
			if took < tc.atLeast {
				t.Errorf("arrived after %s, before the link's %s", took, tc.atLeast)
			}
			if s := p.Stats().String(); !strings.Contains(s, tc.counters) {
				t.Errorf("stats %q, want %q", s, tc.counters)
			}
		})
	}
}

// TestRelayKeepsOrder: chunks with random delays still arrive in order.
func TestRelayKeepsOrder(t *testing.T) {
	in, out, _ := relayPair(Link{DelayMax: 20 * time.Millisecond})
	defer in.Close()
	go func() {
		for i := 0; i < 50; i++ {
			fmt.Fprintf(in, "%d\n", i)
		}
	}()
	r := bufio.NewReader(out)
	for i := 0; i < 50; i++ {
		line, err := r.ReadString('\n')
		if err != nil || line != fmt.Sprintf("%d\n", i) {
			t.Fatalf("line %d: %q %v", i, line, err)
		}
	}
}

// TestProxyInNamespace: a real proxy in host 1's namespace: host 1's
// connection to host 2 goes through it, transparently (host 2 sees host
// 1's own address, which etcd checks against its certificate), and a
// changed link takes effect.
func TestProxyInNamespace(t *testing.T) {
	if os.Geteuid() != 0 || testing.Short() {
		t.Skip("needs root (namespaces, nft)")
	}
	nt, err := NewNet(Prefix("rfx", 1), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer nt.Remove()
	// An echo server on host 2 that says who called.
	var ln net.Listener
	if err := inNetns(nt.Hosts[1], func() (err error) { ln, err = net.Listen("tcp", nt.Addr(2)+":2379"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "from %s\n", c.RemoteAddr().(*net.TCPAddr).IP)
				io.Copy(c, c)
			}()
		}
	}()
	p, err := StartProxy(nt.Hosts[0], Subnet, nt.Addr(1), []int{2379}, Link{DelayMin: 30 * time.Millisecond, DelayMax: 30 * time.Millisecond}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var c net.Conn
	if err := inNetns(nt.Hosts[0], func() (err error) { c, err = net.Dial("tcp", nt.Addr(2)+":2379"); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "from "+nt.Addr(1)+"\n" {
		t.Fatalf("through the proxy: %q %v", line, err)
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Errorf("the link's delay was not applied")
	}
	if s := p.Stats(); s.Conns != 1 || s.Bytes == 0 {
		t.Errorf("the connection did not go through the proxy: %s", s)
	}
	// Cut: the connection is closed at its next chunk.
	if err := p.SetLink(Link{DropP: 1}); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "ping\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 10)); err == nil {
		t.Error("a connection on a cut link still answered")
	}
	if err := p.SetLink(Link{DropP: 2}); err == nil {
		t.Error("a probability of 2 was taken")
	}
}
