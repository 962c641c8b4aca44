package daemon

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Connection caps: enough for every legitimate caller (a migration uses
// two or three connections, a CLI one), far below the daemon's fd limit.
const (
	maxConns          = 1024 // per listener
	maxConnsPerSource = 64   // per remote IP on the peer listener
	handshakeTimeout  = 10 * time.Second
)

// guardedListener keeps accepting whatever happens (an accept error is
// logged and retried with backoff, never the end of the listener), and
// caps open connections overall and per source address: a flood is shed
// at accept, before it can take the daemon's file descriptors.
type guardedListener struct {
	net.Listener
	what      string
	total     int
	perSource int
	log       *slog.Logger

	mu     sync.Mutex
	active int
	bySrc  map[string]int
	peers  int // promoted: verified peer hosts

	shed     atomic.Int64 // connections closed at accept since the last log line
	lastNote atomic.Int64 // unix nanos of that line
}

func newGuardedListener(l net.Listener, what string, total, perSource int, log *slog.Logger) *guardedListener {
	return &guardedListener{Listener: l, what: what, total: total, perSource: perSource, log: log, bySrc: map[string]int{}}
}

// Accept returns the next connection within the caps.
func (l *guardedListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			// EMFILE, ENFILE, ECONNABORTED...: wait and go on.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			l.log.Warn("accept failed; retrying", "listener", l.what, "err", err, "in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		src := sourceOf(c.RemoteAddr())
		if !l.take(src) {
			c.Close()
			l.noteShed(src)
			continue
		}
		return &trackedConn{Conn: c, release: func() { l.give(src) }}, nil
	}
}

// sourceOf is what the per-source cap counts: an IPv4 address, an IPv6
// /64 (one site's whole block), or the unix socket.
func sourceOf(a net.Addr) string {
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String() // unix sockets: one source
	}
	if ip := net.ParseIP(h); ip != nil && ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return h
}

func (l *guardedListener) take(src string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active >= l.total || l.bySrc[src] >= l.perSource {
		return false
	}
	l.active++
	l.bySrc[src]++
	return true
}

func (l *guardedListener) give(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active--
	if l.bySrc[src]--; l.bySrc[src] <= 0 {
		delete(l.bySrc, src)
	}
}

// noteShed logs shed connections at most every 10 s.
func (l *guardedListener) noteShed(src string) {
	n := l.shed.Add(1)
	now := time.Now().UnixNano()
	if last := l.lastNote.Load(); now-last > int64(10*time.Second) && l.lastNote.CompareAndSwap(last, now) {
		l.shed.Add(-n)
		l.log.Warn("connection cap reached: closing new connections", "listener", l.what, "closed", n, "last_source", src, "cap_total", l.total, "cap_per_source", l.perSource)
	}
}

// maxPeerConns caps connections of verified peer hosts, counted apart
// from the shared cap: anonymous clients filling theirs cannot keep a
// peer (a migration) out.
const maxPeerConns = 256

// promote moves c from the shared cap to the verified peers' budget; it
// reports false (and c is to be closed) when that budget is full.
func (l *guardedListener) promote(c net.Conn) bool {
	tc, ok := c.(*trackedConn)
	if !ok {
		return true
	}
	l.mu.Lock()
	if l.peers >= maxPeerConns {
		l.mu.Unlock()
		return false
	}
	l.peers++
	l.mu.Unlock()
	tc.once.Do(tc.release)
	tc.release2 = func() { l.mu.Lock(); l.peers--; l.mu.Unlock() }
	return true
}

// Active is the number of open connections.
func (l *guardedListener) Active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active
}

// trackedConn gives its slot back once, when closed.
type trackedConn struct {
	net.Conn
	once    sync.Once
	release func()
	// release2 gives back a promoted connection's peer slot.
	once2    sync.Once
	release2 func()
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	if c.release2 != nil {
		c.once2.Do(c.release2)
	}
	return err
}

// Detach gives the slot back and returns the bare connection: for a
// migration data connection (authenticated by its token) handed to QEMU
// as a TCP socket.
func (c *trackedConn) Detach() net.Conn {
	c.once.Do(c.release)
	return c.Conn
}

// CloseWrite half-closes when the underlying connection can.
func (c *trackedConn) CloseWrite() error {
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return nil
}
