package daemon

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/ringfence/ringfence/internal/api"
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
	conn, err := dialPeer(r.Context(), req.Target, s.peerTLS)
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
	res, err := s.mgr.MigrateOut(r.Context(), name, conn, req.DowntimeMs, func(p api.MigrationProgress) {
		send(api.MigrateEvent{Progress: &p})
	})
	if err != nil {
		_, class := api.StatusOf(err)
		send(api.MigrateEvent{Error: err.Error(), Class: class})
		return
	}
	send(api.MigrateEvent{Result: &res})
}

// dialPeer opens the migration channel to another daemon.
func dialPeer(ctx context.Context, target string, cfg *tls.Config) (net.Conn, error) {
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
	fmt.Fprintf(raw, "POST %s/migrate/incoming HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: ringfence-migration\r\n\r\n", api.Version, host)
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
