package daemon

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/domain"
	"github.com/ringfence/ringfence/internal/migration"
	"github.com/ringfence/ringfence/internal/names"
	"github.com/ringfence/ringfence/internal/peer"
)

// rwConn reads through the hijacked connection's buffer so no byte the
// HTTP server already read is lost.
type rwConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *rwConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes TLS (and TCP/unix) connections.
func (c *rwConn) CloseWrite() error {
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return nil
}

// upgrade takes over the connection as a raw stream (101 Switching
// Protocols); the console and migration speak their own bytes on it.
func upgrade(w http.ResponseWriter, proto string) (net.Conn, *bufio.ReadWriter, bool) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		reply(w, nil, fmt.Errorf("%s needs a hijackable connection", proto))
		return nil, nil, false
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, false
	}
	conn.SetDeadline(time.Time{}) // streams run as long as they need
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + proto + "\r\nConnection: Upgrade\r\n\r\n")
	rw.Flush()
	return conn, rw, true
}

// incoming is the destination side: only reachable over the mutual-TLS
// peer listener (and the root-only socket).
func (s *Server) incoming(w http.ResponseWriter, r *http.Request) {
	conn, rw, ok := upgrade(w, "ringfence-migration")
	if !ok {
		return
	}
	defer conn.Close()
	// The caller (the source host) stays on the context: its domain's
	// name is its own in the cluster (nameClaim).
	if err := s.mgr.MigrateIn(context.WithoutCancel(r.Context()), &rwConn{Conn: conn, r: rw.Reader}); err != nil {
		s.log.Warn("incoming migration failed", "err", err)
	}
}

// incomingData takes an encrypted migration data connection and hands it
// to the incoming migration that gave out its token.
func (s *Server) incomingData(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	conn, rw, ok := upgrade(w, "ringfence-migration-data")
	if !ok {
		return
	}
	if !s.mgr.DeliverMigrationData(token, &rwConn{Conn: conn, r: rw.Reader}) {
		s.log.Warn("refused a migration data connection with no matching migration", "from", conn.RemoteAddr().String())
		conn.Close()
	}
}

// migrate is the source side, as an operation: the target and the
// domain are checked at once, then the operation dials the destination's
// peer listener with this host's certificate and streams; its progress
// carries the migration's figures.
func (s *Server) migrate(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req api.MigrateRequest
	if err := decode(r, &req); err != nil {
		reply(w, nil, err)
		return
	}
	if req.DowntimeMs <= 0 {
		req.DowntimeMs = 30
	}
	if _, err := checkTarget(req.Target); err != nil {
		reply(w, nil, err)
		return
	}
	if _, err := s.mgr.Get(name); err != nil {
		reply(w, nil, err)
		return
	}
	s.startOp(w, r, "migrate", name, s.opTenant(r, name), func(ctx context.Context, progress func(api.JobProgress)) (any, error) {
		mp, err := s.dialPeer(ctx, name, req.Target)
		if err != nil {
			return nil, err
		}
		defer mp.Control.Close()
		o := domain.MigrateOptions{DowntimeMs: req.DowntimeMs, Plain: req.PlainStream, WithStorage: req.WithStorage, StorageDir: req.StorageDir}
		return s.mgr.MigrateOut(ctx, name, mp, o, func(p api.MigrationProgress) {
			progress(api.JobProgress{Phase: p.Status, Done: p.TransferredB, Total: p.TransferredB + p.RemainingB, Migration: &p})
		})
	})
}

// dialPeer opens the control channel to the destination at target for
// domain name, and says how to open its data connections.
func (s *Server) dialPeer(ctx context.Context, name, target string) (domain.MigrationPeer, error) {
	host, err := checkTarget(target)
	if err != nil {
		return domain.MigrationPeer{}, err
	}
	tc, err := s.peerTLS(host)
	if err != nil {
		return domain.MigrationPeer{}, err
	}
	if _, err := s.mgr.Get(name); err != nil {
		return domain.MigrationPeer{}, err
	}
	conn, err := dialUpgrade(ctx, target, tc, "/migrate/incoming", "ringfence-migration")
	if err != nil {
		return domain.MigrationPeer{}, api.Errorf(api.ErrUnavailable, "%v", err)
	}
	return domain.MigrationPeer{Control: conn, Hostname: host, DialData: func(ctx context.Context, token string, plain bool) (net.Conn, error) {
		if plain {
			return migration.DialPlain(ctx, target, token)
		}
		return dialUpgrade(ctx, target, tc, "/migrate/data/"+token, "ringfence-migration-data")
	}}, nil
}

// dialUpgrade opens a mutual-TLS stream to another daemon: an HTTP
// upgrade of path to proto (the migration channel, its data connection).
func dialUpgrade(ctx context.Context, target string, cfg *tls.Config, path, proto string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("destination %q: want HOST:PORT", target)
	}
	c := cfg.Clone()
	c.ServerName = host
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: c}
	raw, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", target, explainTLS(err, host))
	}
	// Hand-written request line: path and proto are ours (the token is
	// hex from the destination), host is a parsed address.
	fmt.Fprintf(raw, "POST %s%s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", api.Version, path, host, proto)
	br := bufio.NewReader(raw)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("%s did not accept the migration: %w", target, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		raw.Close()
		return nil, fmt.Errorf("%s answered %s", target, resp.Status)
	}
	return &rwConn{Conn: raw, r: br}, nil
}

// checkTarget checks a migration destination (it reaches a request line
// and a TLS server name): HOST:PORT with a host name or IP and a port.
func checkTarget(target string) (string, error) {
	host, port, err := net.SplitHostPort(target)
	bad := api.Errorf(api.ErrInvalid, "destination %q: want HOST:PORT (a host name or IP address, and the peer listener's port)", target)
	if err != nil {
		return "", bad
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", bad
	}
	if net.ParseIP(host) == nil {
		for _, label := range strings.Split(host, ".") {
			if !names.Valid(label) {
				return "", bad
			}
		}
	}
	return host, nil
}

// explainTLS says in a peer's words why a handshake failed.
func explainTLS(err error, host string) error {
	var hn x509.HostnameError
	var ua x509.UnknownAuthorityError
	var alert tls.AlertError
	switch {
	case errors.As(err, &hn):
		return fmt.Errorf("the certificate there is for %s, not %s: dial a name it carries, or renew that host's certificate with the right --name (%w)",
			strings.Join(append(hn.Certificate.DNSNames, peer.IPStrings(hn.Certificate.IPAddresses)...), ", "), host, err)
	case errors.As(err, &ua):
		return fmt.Errorf("that host's certificate is not from this host's CA: it must join with a token from this cluster's authority (%w)", err)
	case errors.As(err, &alert):
		return fmt.Errorf("that host refused this host's certificate (revoked, not yet on its peer list, or another CA: see `ringfence host peers` on the authority): %w", err)
	}
	return err
}

// peerListener serves mutual TLS on the peer port and, on the same port,
// takes migration data connections (which start with migration.DataPreface, never
// with a TLS record) and hands them to the waiting incoming migration.
type peerListener struct {
	raw   net.Listener
	guard *guardedListener // the caps raw enforces (nil: none)
	tls   *tls.Config
	conns chan net.Conn
	mgr   *domain.Manager
	log   *slog.Logger
}

func newPeerListener(raw net.Listener, cfg *tls.Config, mgr *domain.Manager, log *slog.Logger) *peerListener {
	l := &peerListener{raw: raw, tls: cfg, conns: make(chan net.Conn), mgr: mgr, log: log}
	l.guard, _ = raw.(*guardedListener)
	go l.loop()
	return l
}

func (l *peerListener) loop() {
	defer close(l.conns)
	for {
		c, err := l.raw.Accept() // retries and caps: guardedListener
		if err != nil {
			return
		}
		go l.sniff(c)
	}
}

// sniff reads the first byte without buffering past what it consumes, so
// a data connection reaches QEMU with its stream intact. A TLS connection
// is handshaken here, under a deadline, so only a finished handshake (and
// a peer-list check) costs the HTTP server anything.
func (l *peerListener) sniff(c net.Conn) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	first := make([]byte, 1)
	if _, err := io.ReadFull(c, first); err != nil {
		c.Close()
		return
	}
	if !migration.IsData(first[0]) {
		l.handshake(c, first)
		return
	}
	token, err := migration.ReadDataToken(c, first[0])
	if err != nil {
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	raw := c
	if tc, isTracked := c.(*trackedConn); isTracked {
		raw = tc.Detach()
	}
	if checkToken(token) != nil || !l.mgr.DeliverMigrationData(token, raw) {
		l.log.Warn("refused a migration data connection with no matching migration", "from", c.RemoteAddr().String())
		c.Close()
	}
}

// handshake serves a peer's TLS connection (first: the byte sniff read).
func (l *peerListener) handshake(c net.Conn, first []byte) {
	tc := tls.Server(&prefixed{Conn: c, pre: first}, l.tls)
	if err := tc.Handshake(); err != nil {
		l.log.Debug("peer handshake failed", "from", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	if len(tc.ConnectionState().VerifiedChains) > 0 && l.guard != nil && !l.guard.promote(c) {
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	l.conns <- tc
}

func (l *peerListener) Accept() (net.Conn, error) {
	c, ok := <-l.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

func (l *peerListener) Close() error   { return l.raw.Close() }
func (l *peerListener) Addr() net.Addr { return l.raw.Addr() }

// prefixed replays bytes already read from a connection.
type prefixed struct {
	net.Conn
	pre []byte
}

func (p *prefixed) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
