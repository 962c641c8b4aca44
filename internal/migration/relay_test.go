package migration

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair is a connected loopback TCP pair (real sockets: half-close and
// resets behave as they do between two hosts).
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() { c, _ := l.Accept(); acc <- c }()
	a, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-acc
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestRelayCarriesTheStreamWhole(t *testing.T) {
	ctx := context.Background()
	a, b := tcpPair(t)
	src, srcDone, err := relayFile(ctx, a, true)
	if err != nil {
		t.Fatal(err)
	}
	dst, dstDone, err := relayFile(ctx, b, false)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 8<<20+12345)
	rand.Read(want)
	go func() {
		// QEMU writes in odd-sized pieces, then closes its end.
		for p := want; len(p) > 0; {
			n := min(len(p), 70001)
			src.Write(p[:n])
			p = p[n:]
		}
		src.Close()
	}()
	got, err := io.ReadAll(dst) // ends at EOF: the half-close went through
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("relayed %d bytes, want %d identical", len(got), len(want))
	}
	if err := <-srcDone; err != nil {
		t.Fatalf("source relay: %v", err)
	}
	if err := <-dstDone; err != nil {
		t.Fatalf("destination relay: %v", err)
	}
	// A finished relay lets go of its connection (a daemon migrates many
	// times: nothing may leak).
	for _, c := range []net.Conn{a, b} {
		if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("connection still open after the relay ended: %v", err)
		}
	}
}

// A destination that goes away mid-stream must fail the source QEMU's
// writes (the migration fails there and the guest stays), not block them.
func TestRelayBreaksWhenThePeerGoes(t *testing.T) {
	a, b := tcpPair(t)
	src, srcDone, err := relayFile(context.Background(), a, true)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	go func() {
		io.CopyN(io.Discard, b, 1<<20)
		b.Close()
	}()
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(10 * time.Second)
	var werr error
	for werr == nil && time.Now().Before(deadline) {
		src.SetWriteDeadline(deadline)
		_, werr = src.Write(buf)
	}
	if werr == nil {
		t.Fatal("writes kept succeeding after the peer left")
	}
	if err := <-srcDone; err == nil {
		t.Fatal("the relay reported success after the peer left")
	}
}

// Cancelling (the migration was cancelled) stops the relay and closes
// both sides at once.
func TestRelayStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	a, b := tcpPair(t)
	dst, done, err := relayFile(ctx, b, false)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	a.Write([]byte("partial"))
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the relay did not stop on cancel")
	}
	got, _ := io.ReadAll(dst)
	if string(got) != "partial" && len(got) != 0 {
		t.Fatalf("QEMU's end got %q", got)
	}
}
