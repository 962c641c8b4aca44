package daemon

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/ringfence/ringfence/internal/auth"
)

// A domain's interactive streams: its serial console and its VNC
// display. Each route answers two kinds of client on one URL: a
// WebSocket handshake (binary messages both ways, text ones accepted
// from the client: what a browser's xterm.js or noVNC speaks) and the
// raw HTTP upgrade the CLI uses (Upgrade: ringfence-console,
// ringfence-vnc). Both need domain.console: the display is as much the
// guest's console as its serial port.

// A browser cannot set Authorization on a WebSocket, so it may offer its
// API token as a subprotocol, "ringfence.token.<TOKEN>", beside
// wsProtocol, which the handshake then selects (a browser fails a
// handshake that selects none of the subprotocols it offered).
const (
	wsProtocol    = "ringfence"
	wsTokenPrefix = "ringfence.token."
)

// Limits of a WebSocket stream: a message from the client (a paste, a
// VNC clipboard) up to wsReadLimit; a client that takes no message for
// wsWriteTimeout is cut off rather than holding the daemon's writer.
const (
	wsReadLimit    = 1 << 20
	wsWriteTimeout = 30 * time.Second
)

func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// wsToken is the API token a WebSocket handshake offers as a
// subprotocol (see wsTokenPrefix).
func wsToken(r *http.Request) (string, bool) {
	if !isWebSocket(r) {
		return "", false
	}
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if tok, ok := strings.CutPrefix(strings.TrimSpace(p), wsTokenPrefix); ok {
				return tok, true
			}
		}
	}
	return "", false
}

// openStream takes over the request's connection as a byte stream: a
// WebSocket, or the raw upgrade to proto. On false the client has had
// its answer.
func openStream(w http.ResponseWriter, r *http.Request, proto string) (io.ReadWriteCloser, bool) {
	if !isWebSocket(r) {
		conn, rw, ok := upgrade(w, proto)
		if !ok {
			return nil, false
		}
		return &rwConn{Conn: conn, r: rw.Reader}, true
	}
	// The server's read and write timeouts were set on the connection
	// for an ordinary request; a stream lasts as long as its client.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{wsProtocol},
		// A client certificate is sent by the browser whatever page
		// opened the socket: only a page of the API's own origin may
		// use it. A token (header or subprotocol) is the page's own.
		InsecureSkipVerify: principalOf(r.Context()).Kind != auth.Cert,
		// The console is small and RFB is compressed already.
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, false // Accept has answered
	}
	c.SetReadLimit(wsReadLimit)
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	return &wsStream{c: c, ctx: ctx, cancel: cancel}, true
}

// wsStream is a WebSocket as a byte stream: each Write one binary
// message, Read the messages' bytes in order, whatever their type.
type wsStream struct {
	c      *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
	r      io.Reader // the message being read
}

func (s *wsStream) Read(p []byte) (int, error) {
	for {
		if s.r == nil {
			_, r, err := s.c.Reader(s.ctx)
			if err != nil {
				return 0, err
			}
			s.r = r
		}
		n, err := s.r.Read(p)
		if errors.Is(err, io.EOF) {
			s.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (s *wsStream) Write(p []byte) (int, error) {
	ctx, cancel := context.WithTimeout(s.ctx, wsWriteTimeout)
	defer cancel()
	if err := s.c.Write(ctx, websocket.MessageBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *wsStream) Close() error {
	defer s.cancel()
	return s.c.Close(websocket.StatusNormalClosure, "")
}

// console streams a domain's serial console: the history (unless
// ?history=0), then live output to every attached client; what any of
// them sends goes to the guest's serial port.
func (s *Server) console(w http.ResponseWriter, r *http.Request) {
	con, err := s.mgr.Console(r.PathValue("name"))
	if err != nil {
		reply(w, nil, err)
		return
	}
	st, ok := openStream(w, r, "ringfence-console")
	if !ok {
		return
	}
	defer st.Close()
	hist, ch, detach := con.Attach()
	defer detach()
	if r.URL.Query().Get("history") != "0" && len(hist) > 0 {
		st.Write(hist)
	}
	go func() {
		// The client going ends the stream at once, not at the
		// guest's next output.
		defer detach()
		buf := make([]byte, 4096)
		for {
			n, err := st.Read(buf)
			if n > 0 {
				con.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	for p := range ch {
		if _, err := st.Write(p); err != nil {
			return
		}
	}
}

// vnc relays a domain's VNC display: the RFB byte stream between the
// client and QEMU's VNC server (its unix socket), until either side ends
// (the domain stopping ends it).
func (s *Server) vnc(w http.ResponseWriter, r *http.Request) {
	vc, err := s.mgr.VNC(r.Context(), r.PathValue("name"))
	if err != nil {
		reply(w, nil, err)
		return
	}
	defer vc.Close()
	st, ok := openStream(w, r, "ringfence-vnc")
	if !ok {
		return
	}
	defer st.Close()
	relay(st, vc)
}

// relay copies both ways between a and b until one side ends, then
// closes both.
func relay(a, b io.ReadWriteCloser) {
	done := make(chan struct{}, 2)
	cp := func(dst io.Writer, src io.Reader) {
		io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	a.Close()
	b.Close()
	<-done
}
