package e2e

import (
	"bytes"
	"os"
	"runtime"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// sniffer records every TCP payload byte on the namespace's loopback to
// or from port, so a test can tell whether a string crossed the wire in
// clear.
type sniffer struct {
	marker  []byte
	stopped atomic.Bool
	done    chan struct{}
	bytes   int  // payload bytes seen (both directions, each packet once per direction)
	found   bool // marker seen in clear in one packet
}

// inNetns runs f on a thread that has joined namespace ns; sockets f
// opens stay in ns. The thread is never unlocked, so the runtime ends it
// with its goroutine instead of reusing it elsewhere.
func inNetns(t *testing.T, ns string, f func() error) {
	t.Helper()
	if err := inNetnsErr(ns, f); err != nil {
		t.Fatalf("in namespace %s: %v", ns, err)
	}
}

// inNetnsErr runs f on a thread inside namespace ns and returns its error.
func inNetnsErr(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		nsf, err := os.Open("/run/netns/" + ns)
		if err == nil {
			err = unix.Setns(int(nsf.Fd()), unix.CLONE_NEWNET)
			nsf.Close()
		}
		if err == nil {
			err = f()
		}
		errc <- err
	}()
	return <-errc
}

// sniff opens a packet socket on lo inside namespace ns and captures
// until stop.
func sniff(t *testing.T, ns string, port int, marker []byte) *sniffer {
	t.Helper()
	s := &sniffer{marker: marker, done: make(chan struct{})}
	var fd int
	inNetns(t, ns, func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return err
		}
		// lo is index 1 in every namespace. A receive timeout lets stop
		// end the loop (closing does not wake a blocked recvfrom); a big
		// buffer, as a migration bursts faster than the loop reads.
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 256<<20)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: 1}); err != nil {
			unix.Close(fd)
			return err
		}
		return nil
	})
	go func() {
		defer close(s.done)
		defer unix.Close(fd)
		buf := make([]byte, 1<<17)
		for !s.stopped.Load() {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				if err == unix.EAGAIN || err == unix.EINTR {
					continue
				}
				return
			}
			if p := tcpPayload(buf[:n], port); len(p) > 0 {
				s.bytes += len(p)
				s.found = s.found || bytes.Contains(p, s.marker)
			}
		}
	}()
	return s
}

// stop ends the capture and reports how many payload bytes it saw and
// whether the marker crossed in clear.
func (s *sniffer) stop() (bytesSeen int, found bool) {
	s.stopped.Store(true)
	<-s.done
	return s.bytes, s.found
}

// tcpPayload is the payload of an IPv4 TCP packet from or to port.
func tcpPayload(b []byte, port int) []byte {
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != unix.IPPROTO_TCP {
		return nil
	}
	ihl := int(b[0]&0x0f) * 4
	if len(b) < ihl+20 {
		return nil
	}
	tcp := b[ihl:]
	sp, dp := int(tcp[0])<<8|int(tcp[1]), int(tcp[2])<<8|int(tcp[3])
	if sp != port && dp != port {
		return nil
	}
	off := int(tcp[12]>>4) * 4
	if len(tcp) < off {
		return nil
	}
	return tcp[off:]
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
