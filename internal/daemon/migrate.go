package daemon

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/domain"
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
	if err := s.mgr.MigrateIn(context.Background(), &rwConn{Conn: conn, r: rw.Reader}); err != nil {
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

// migrate is the source side: dial the destination's peer listener with
// this host's certificate, then stream, reporting progress as JSON lines.
func (s *Server) migrate(w http.ResponseWriter, r *http.Request, name string) {
	var req api.MigrateRequest
	if err := decode(r, &req); err != nil {
		reply(w, nil, err)
		return
	}
	if s.peerTLS == nil {
		reply(w, nil, api.Errorf(api.ErrUnavailable, "this host has no peer certificate: run `ringfence host trust` (with the same CA on both hosts)"))
		return
	}
	if req.DowntimeMs <= 0 {
		req.DowntimeMs = 30
	}
	if _, err := s.mgr.Get(name); err != nil {
		reply(w, nil, err)
		return
	}
	conn, err := dialUpgrade(r.Context(), req.Target, s.peerTLS, "/migrate/incoming", "ringfence-migration")
	if err != nil {
		reply(w, nil, api.Errorf(api.ErrUnavailable, "%v", err))
		return
	}
	defer conn.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	fl, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	send := func(ev api.MigrateEvent) {
		enc.Encode(ev)
		if fl != nil {
			fl.Flush()
		}
	}
	host, _, _ := net.SplitHostPort(req.Target)
	mp := domain.MigrationPeer{Control: conn, Hostname: host, DialData: func(ctx context.Context, token string, plain bool) (net.Conn, error) {
		if plain {
			return dialData(ctx, req.Target, token)
		}
		return dialUpgrade(ctx, req.Target, s.peerTLS, "/migrate/data/"+token, "ringfence-migration-data")
	}}
	res, err := s.mgr.MigrateOut(r.Context(), name, mp, domain.MigrateOptions{DowntimeMs: req.DowntimeMs, Plain: req.PlainStream, WithStorage: req.WithStorage, StorageDir: req.StorageDir}, func(p api.MigrationProgress) {
		send(api.MigrateEvent{Progress: &p})
	})
	if err != nil {
		_, class := api.StatusOf(err)
		send(api.MigrateEvent{Error: err.Error(), Class: class})
		return
	}
	send(api.MigrateEvent{Result: &res})
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
		return nil, fmt.Errorf("connecting to %s: %w", target, err)
	}
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

// dialData opens a migration data connection: plain TCP, named by the
// token the destination gave on the authenticated control channel; the
// QEMUs then run TLS over it with certificates from the same CA.
func dialData(ctx context.Context, target, token string) (*net.TCPConn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", target, err)
	}
	if _, err := io.WriteString(c, domain.DataPreface+token+"\n"); err != nil {
		c.Close()
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// peerListener serves mutual TLS on the peer port and, on the same port,
// takes migration data connections (which start with DataPreface, never
// with a TLS record) and hands them to the waiting incoming migration.
type peerListener struct {
	raw   net.Listener
	tls   *tls.Config
	conns chan net.Conn
	mgr   *domain.Manager
	log   *slog.Logger
}

func newPeerListener(raw net.Listener, cfg *tls.Config, mgr *domain.Manager, log *slog.Logger) *peerListener {
	l := &peerListener{raw: raw, tls: cfg, conns: make(chan net.Conn), mgr: mgr, log: log}
	go l.loop()
	return l
}

func (l *peerListener) loop() {
	defer close(l.conns)
	for {
		c, err := l.raw.Accept()
		if err != nil {
			return
		}
		go l.sniff(c)
	}
}

// sniff reads the first byte without buffering past what it consumes, so
// a data connection reaches QEMU with its stream intact.
func (l *peerListener) sniff(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	first := make([]byte, 1)
	if _, err := io.ReadFull(c, first); err != nil {
		c.Close()
		return
	}
	if first[0] != domain.DataPreface[0] {
		c.SetReadDeadline(time.Time{})
		l.conns <- tls.Server(&prefixed{Conn: c, pre: first}, l.tls)
		return
	}
	line := first
	b := make([]byte, 1)
	for len(line) < 128 && line[len(line)-1] != '\n' {
		if _, err := io.ReadFull(c, b); err != nil {
			c.Close()
			return
		}
		line = append(line, b[0])
	}
	c.SetReadDeadline(time.Time{})
	token, ok := strings.CutPrefix(strings.TrimSpace(string(line)), strings.TrimSpace(domain.DataPreface))
	if !ok || !l.mgr.DeliverMigrationData(strings.TrimSpace(token), c) {
		l.log.Warn("refused a migration data connection with no matching migration", "from", c.RemoteAddr().String())
		c.Close()
	}
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
