package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Link is how bad a lossy link is. Every chunk a connection carries is
// held for a delay drawn uniformly from [DelayMin, DelayMax] (order
// kept); with probability SpikeP the delay is Spike instead (a burst of
// queueing); with StallP the direction stops for Stall (a lost segment
// retransmitted late); with DropP the connection is cut both ways (a
// reset), and its peer must dial again. Probabilities are per chunk.
type Link struct {
	DelayMin, DelayMax time.Duration
	SpikeP             float64
	Spike              time.Duration
	StallP             float64
	Stall              time.Duration
	DropP              float64
}

// Lossy is the link the lossy soak runs on: tens of milliseconds of
// jitter, spikes of half a second, stalls of a second and a cut every
// few hundred chunks. A cluster that fences on this has a fence without
// cause.
var Lossy = Link{
	DelayMin: 5 * time.Millisecond, DelayMax: 60 * time.Millisecond,
	SpikeP: 0.01, Spike: 500 * time.Millisecond,
	StallP: 0.005, Stall: time.Second,
	DropP: 0.002,
}

// Validate says what is wrong with l, if anything.
func (l Link) Validate() error {
	for name, p := range map[string]float64{"SpikeP": l.SpikeP, "StallP": l.StallP, "DropP": l.DropP} {
		if p < 0 || p > 1 {
			return fmt.Errorf("link %s %v: a probability is between 0 and 1", name, p)
		}
	}
	if l.DelayMin < 0 || l.DelayMax < l.DelayMin {
		return fmt.Errorf("link delay %s..%s: want 0 <= min <= max", l.DelayMin, l.DelayMax)
	}
	return nil
}

// ProxyStats counts what a proxy did.
type ProxyStats struct {
	Conns, Drops, Stalls, Spikes, DialErrors int64
	Bytes                                    int64
}

func (s ProxyStats) String() string {
	return fmt.Sprintf("%d connections, %d cut, %d stalls, %d spikes, %d failed dials, %d bytes",
		s.Conns, s.Drops, s.Stalls, s.Spikes, s.DialErrors, s.Bytes)
}

// proxyMark is set on the proxy's own outgoing sockets so the redirect
// rule lets them through instead of looping them back to the proxy.
const proxyMark = 0x5246_0001

// Proxy is a transparent TCP proxy inside one host's network namespace:
// an nft rule redirects the host's outgoing connections to the cluster's
// ports on other hosts to it, and it dials the original destination
// from the same namespace (so the source address, which etcd checks
// against the peer's certificate, is unchanged), relaying through Link.
type Proxy struct {
	ns      string
	link    atomic.Pointer[Link]
	ln      net.Listener
	workers *nsWorker
	stopW   func()
	rngMu   sync.Mutex
	rng     *rand.Rand
	table   string
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]bool
	stats   struct{ conns, drops, stalls, spikes, dialErrs, bytes atomic.Int64 }
}

// StartProxy puts the proxy in front of every connection namespace ns
// opens to peers (a CIDR, e.g. 10.77.0.0/24, its own address excepted:
// self) on ports. seed makes the losses reproducible.
func StartProxy(ns, peers, self string, ports []int, link Link, seed uint64) (*Proxy, error) {
	if err := link.Validate(); err != nil {
		return nil, err
	}
	p := &Proxy{ns: ns, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), conns: map[net.Conn]bool{}}
	p.link.Store(&link)
	var err error
	if p.workers, p.stopW, err = startWorkers(ns, 8); err != nil {
		return nil, err
	}
	p.workers.run(func() { p.ln, err = net.Listen("tcp", "127.0.0.1:0") })
	if err != nil {
		p.stopW()
		return nil, fmt.Errorf("proxy listener in %s: %w", ns, err)
	}
	port := p.ln.Addr().(*net.TCPAddr).Port
	p.table = fmt.Sprintf("rfchaos%d", port)
	if err := p.redirect(peers, self, ports, port); err != nil {
		p.ln.Close()
		p.stopW()
		return nil, err
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// redirect installs the nft table that sends the namespace's outgoing
// connections to the proxy (the proxy's own, marked, pass).
func (p *Proxy) redirect(peers, self string, ports []int, to int) error {
	var ps []string
	for _, pt := range ports {
		ps = append(ps, fmt.Sprint(pt))
	}
	rules := fmt.Sprintf(`table ip %s {
	chain out {
		type nat hook output priority -100; policy accept;
		meta mark %#x return
		ip daddr %s ip daddr != %s tcp dport { %s } redirect to :%d
	}
}
`, p.table, proxyMark, peers, self, strings.Join(ps, ", "), to)
	return nftIn(p.ns, rules)
}

// SetLink changes the link's badness from now on (connections too).
func (p *Proxy) SetLink(l Link) error {
	if err := l.Validate(); err != nil {
		return err
	}
	p.link.Store(&l)
	return nil
}

// Stats is what the proxy did so far.
func (p *Proxy) Stats() ProxyStats {
	return ProxyStats{Conns: p.stats.conns.Load(), Drops: p.stats.drops.Load(), Stalls: p.stats.stalls.Load(),
		Spikes: p.stats.spikes.Load(), DialErrors: p.stats.dialErrs.Load(), Bytes: p.stats.bytes.Load()}
}

// Close removes the redirect (new connections go direct again) and cuts
// the relayed ones.
func (p *Proxy) Close() error {
	err := nftIn(p.ns, "delete table ip "+p.table+"\n")
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.stopW()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.stats.conns.Add(1)
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.serve(c.(*net.TCPConn)) }()
	}
}

// serve dials the connection's original destination and relays both ways.
func (p *Proxy) serve(c *net.TCPConn) {
	defer c.Close()
	dst, err := originalDst(c)
	if err != nil {
		p.stats.dialErrs.Add(1)
		return
	}
	var up net.Conn
	p.workers.run(func() {
		d := net.Dialer{Timeout: 3 * time.Second, Control: markSocket}
		up, err = d.DialContext(context.Background(), "tcp", dst)
	})
	if err != nil {
		p.stats.dialErrs.Add(1)
		return
	}
	defer up.Close()
	p.track(c, up)
	defer p.untrack(c, up)
	cut := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(cut); c.Close(); up.Close() }) }
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.relay(up, c, cut, stop) }()
	go func() { defer wg.Done(); p.relay(c, up, cut, stop) }()
	wg.Wait()
}

func (p *Proxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.conns[c] = true
	}
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

// chunk is data read at one time, due to be written at another.
type chunk struct {
	b   []byte
	due time.Time
}

// relay copies src to dst through the link: a reader stamps each chunk
// with its due time (never earlier than the previous one's: order is
// kept), a writer writes it when due. A drop cuts both directions.
func (p *Proxy) relay(dst io.Writer, src io.Reader, cut chan struct{}, stop func()) {
	q := make(chan chunk, 256)
	go func() {
		defer close(q)
		var last time.Time
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				d, drop := p.fate()
				if drop {
					stop()
					return
				}
				due := time.Now().Add(d)
				if due.Before(last) {
					due = last
				}
				last = due
				select {
				case q <- chunk{b[:n], due}:
				case <-cut:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer stop()
	for ch := range q {
		if w := time.Until(ch.due); w > 0 {
			select {
			case <-time.After(w):
			case <-cut:
				return
			}
		}
		// Counted first: the peer may read them before Write returns.
		p.stats.bytes.Add(int64(len(ch.b)))
		if _, err := dst.Write(ch.b); err != nil {
			return
		}
	}
}

// fate draws what happens to one chunk: its delay, or a cut.
func (p *Proxy) fate() (time.Duration, bool) {
	l := p.link.Load()
	p.rngMu.Lock()
	defer p.rngMu.Unlock()
	return l.draw(p.rng, &p.stats.drops, &p.stats.stalls, &p.stats.spikes)
}

// draw is one chunk's fate under l (counted in the counters given).
func (l Link) draw(r *rand.Rand, drops, stalls, spikes *atomic.Int64) (time.Duration, bool) {
	if r.Float64() < l.DropP {
		drops.Add(1)
		return 0, true
	}
	d := l.DelayMin
	if l.DelayMax > l.DelayMin {
		d += time.Duration(r.Int64N(int64(l.DelayMax - l.DelayMin)))
	}
	if r.Float64() < l.SpikeP {
		spikes.Add(1)
		d = l.Spike
	}
	if r.Float64() < l.StallP {
		stalls.Add(1)
		d += l.Stall
	}
	return d, false
}

// originalDst is where a redirected connection was going (the
// conntrack entry's original destination, SO_ORIGINAL_DST).
func originalDst(c *net.TCPConn) (string, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return "", err
	}
	var addr string
	var gerr error
	err = raw.Control(func(fd uintptr) {
		const soOriginalDst = 80
		m, e := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, soOriginalDst)
		if e != nil {
			gerr = e
			return
		}
		ip := net.IPv4(m.Multiaddr[4], m.Multiaddr[5], m.Multiaddr[6], m.Multiaddr[7])
		addr = net.JoinHostPort(ip.String(), fmt.Sprint(int(m.Multiaddr[2])<<8|int(m.Multiaddr[3])))
	})
	if err == nil {
		err = gerr
	}
	if err != nil {
		return "", fmt.Errorf("original destination of a redirected connection: %w", err)
	}
	return addr, nil
}

func markSocket(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, proxyMark) })
	return errors.Join(err, serr)
}
