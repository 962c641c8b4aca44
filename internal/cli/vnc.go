package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
)

// `ringfence vnc NAME` is xl vncviewer without a port on the host: the
// domain's display is reached through the API (GET /1.0/domains/NAME/
// vnc), and this verb offers it to any VNC viewer on a local TCP port,
// loopback by default. Each connection a viewer makes is one stream over
// the API, so it works against a remote as against the local socket.

// vncBasePort is VNC display :0's port; without --listen the tunnel takes
// the first free display from there, as xl's vncunused does.
const (
	vncBasePort  = 5900
	vncDisplays  = 100
	vncWatchTick = 2 * time.Second
)

func runVNC(e *env, args []string) error {
	fs := flag.NewFlagSet("vnc", flag.ContinueOnError)
	listen := fs.String("listen", "", "the local address viewers connect to (default: 127.0.0.1, the first free port from 5900)")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	name, c := pos[0], e.client()
	// A first stream says now, before anything listens, whether the
	// domain has a display and the caller may open it.
	probe, err := c.VNC(ctx(), name)
	if err != nil {
		return err
	}
	probe.Close()
	ln, err := listenVNC(*listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	addr := ln.Addr().(*net.TCPAddr)
	display := ""
	if n := addr.Port - vncBasePort; n >= 0 && n < vncDisplays {
		display = fmt.Sprintf(" (display :%d)", n)
	}
	fmt.Fprintf(e.stdout, "connect a VNC viewer to %s%s\n", addr, display)
	if !addr.IP.IsLoopback() {
		fmt.Fprintf(e.stderr, "warning: %s is not loopback: whoever reaches it sees %s's screen and types into it (its vncpasswd, if set, is the only check)\n", addr, name)
	}
	fmt.Fprintln(e.stderr, "Ctrl-C ends the tunnel")
	sctx, stop := signal.NotifyContext(ctx(), os.Interrupt)
	defer stop()
	t := &vncTunnel{e: e, c: c, name: name, conns: map[net.Conn]bool{}}
	return t.serve(sctx, ln)
}

// listenVNC listens on addr, or on loopback's first free VNC port.
func listenVNC(addr string) (net.Listener, error) {
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("--listen %s: %w", addr, err)
		}
		return ln, nil
	}
	for n := 0; n < vncDisplays; n++ {
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", vncBasePort+n)); err == nil {
			return ln, nil
		}
	}
	return nil, fmt.Errorf("no free VNC port on 127.0.0.1 from %d to %d: give one with --listen 127.0.0.1:PORT", vncBasePort, vncBasePort+vncDisplays-1)
}

// vncTunnel serves one domain's display to local viewers.
type vncTunnel struct {
	e     *env
	c     *client.Client
	name  string
	mu    sync.Mutex
	conns map[net.Conn]bool // open viewer and API connections
	wg    sync.WaitGroup
}

// serve accepts viewers until ctx ends or the domain stops running;
// then it closes every connection it opened and returns.
func (t *vncTunnel) serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		t.watch(ctx)
		cancel()
		ln.Close()
	}()
	for {
		vc, err := ln.Accept()
		if err != nil {
			break
		}
		t.wg.Add(1)
		go t.pipe(ctx, vc)
	}
	cancel()
	t.mu.Lock()
	for conn := range t.conns {
		conn.Close()
	}
	t.conns = nil // a viewer still being set up sees the tunnel closing
	t.mu.Unlock()
	t.wg.Wait()
	return nil
}

// watch returns once ctx ends or the domain is gone or stopped (its
// display with it), saying so.
func (t *vncTunnel) watch(ctx context.Context) {
	tick := time.NewTicker(vncWatchTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		d, err := t.c.Get(ctx, t.name)
		switch {
		case errors.Is(err, api.ErrNotFound):
			fmt.Fprintf(t.e.stderr, "%s is gone: tunnel closed\n", t.name)
			return
		case err == nil && d.PID == 0:
			fmt.Fprintf(t.e.stderr, "%s is not running (%s): tunnel closed\n", t.name, d.State)
			return
		}
		// Another error (the daemon unreachable a moment): keep on.
	}
}

// pipe relays one viewer's connection through its own API stream.
func (t *vncTunnel) pipe(ctx context.Context, viewer net.Conn) {
	defer t.wg.Done()
	defer viewer.Close()
	if !t.track(viewer) {
		return
	}
	defer t.untrack(viewer)
	stream, err := t.c.VNC(ctx, t.name)
	if err != nil {
		fmt.Fprintf(t.e.stderr, "vnc %s: %v\n", t.name, err)
		return
	}
	defer stream.Close()
	if !t.track(stream) {
		return
	}
	defer t.untrack(stream)
	ended := make(chan struct{}, 2)
	go func() { io.Copy(stream, viewer); ended <- struct{}{} }()
	go func() { io.Copy(viewer, stream); ended <- struct{}{} }()
	<-ended // either side ending ends both (the deferred closes)
}

// track notes an open connection, unless the tunnel is closing.
func (t *vncTunnel) track(conn net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conns == nil {
		return false
	}
	t.conns[conn] = true
	return true
}

func (t *vncTunnel) untrack(conn net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, conn)
}
