// Package qmp is a small client for the QEMU Machine Protocol.
//
// One reader goroutine decodes the socket with a json.Decoder (no line
// length limit, so 200 KB replies such as query-qmp-schema work), matches
// replies to commands by id, and fans events out to any number of
// subscribers without ever blocking on a slow one.
package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Error is an error reply from QEMU, keeping its class.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string { return fmt.Sprintf("qemu: %s (%s)", e.Desc, e.Class) }

// ErrClosed is returned once the monitor connection is gone (QEMU exited).
var ErrClosed = errors.New("qmp: monitor connection closed")

// Event is an asynchronous QMP event.
type Event struct {
	Name      string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

type message struct {
	ID     *uint64         `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
	Event
	QMP json.RawMessage `json:"QMP"`
}

type reply struct {
	ret json.RawMessage
	err error
}

// Monitor is a connected QMP session.
type Monitor struct {
	// Timeout bounds a command whose context has no deadline (0:
	// DefaultTimeout). Set once, right after Dial.
	Timeout time.Duration

	conn net.Conn
	wmu  sync.Mutex

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan reply
	subs    map[int]chan Event
	nextSub int
	closed  bool
	done    chan struct{}
}

// Dial connects to a QMP unix socket, retrying until ctx ends (QEMU creates
// the socket a few ms after exec), and negotiates capabilities.
func Dial(ctx context.Context, path string) (*Monitor, error) {
	var conn net.Conn
	var err error
	for {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "unix", path)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting to QMP socket %s: %w", path, err)
		case <-time.After(time.Millisecond): // QEMU is starting: every ms counts on a migration's path
		}
	}
	m := &Monitor{conn: conn, pending: map[uint64]chan reply{}, subs: map[int]chan Event{}, done: make(chan struct{})}
	dec := json.NewDecoder(conn)
	// Greeting first, synchronously.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetReadDeadline(dl)
	}
	var greet message
	if err := dec.Decode(&greet); err != nil || greet.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("reading QMP greeting from %s: %v", path, err)
	}
	conn.SetReadDeadline(time.Time{})
	go m.readLoop(dec)
	if err := m.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		m.Close()
		return nil, fmt.Errorf("QMP capabilities negotiation: %w", err)
	}
	return m, nil
}

func (m *Monitor) readLoop(dec *json.Decoder) {
	defer func() {
		m.mu.Lock()
		m.closed = true
		for id, ch := range m.pending {
			ch <- reply{err: ErrClosed}
			delete(m.pending, id)
		}
		for id, ch := range m.subs {
			close(ch)
			delete(m.subs, id)
		}
		m.mu.Unlock()
		close(m.done)
	}()
	for {
		var msg message
		if err := dec.Decode(&msg); err != nil {
			return
		}
		m.mu.Lock()
		switch {
		case msg.ID != nil:
			if ch, ok := m.pending[*msg.ID]; ok {
				delete(m.pending, *msg.ID)
				if msg.Error != nil {
					ch <- reply{err: msg.Error}
				} else {
					ch <- reply{ret: msg.Return}
				}
			}
		case msg.Name != "":
			for _, ch := range m.subs {
				select {
				case ch <- msg.Event:
				default: // a subscriber that does not keep up loses events, never stalls replies
				}
			}
		}
		m.mu.Unlock()
	}
}

// DefaultTimeout bounds a command whose context has no deadline: a QEMU
// that is stopped (SIGSTOP) or hung never answers, and no caller may wait
// for it forever (they hold the domain's lock).
const DefaultTimeout = 30 * time.Second

// Execute runs a command. args may be nil; out, if not nil, receives the
// "return" value.
func (m *Monitor) Execute(ctx context.Context, cmd string, args any, out any) error {
	return m.execute(ctx, cmd, args, out, nil)
}

// ExecuteFD runs a command with a file descriptor attached (SCM_RIGHTS),
// as `getfd` and `add-fd` expect.
func (m *Monitor) ExecuteFD(ctx context.Context, cmd string, args any, out any, f *os.File) error {
	return m.execute(ctx, cmd, args, out, f)
}

func (m *Monitor) execute(ctx context.Context, cmd string, args any, out any, f *os.File) error {
	if _, ok := ctx.Deadline(); !ok {
		t := m.Timeout
		if t <= 0 {
			t = DefaultTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	m.nextID++
	id := m.nextID
	ch := make(chan reply, 1)
	m.pending[id] = ch
	m.mu.Unlock()

	req := map[string]any{"execute": cmd, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	m.wmu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		m.conn.SetWriteDeadline(dl)
	}
	if f != nil {
		uc, ok := m.conn.(*net.UnixConn)
		if !ok {
			err = fmt.Errorf("fd passing needs a unix socket")
		} else {
			_, _, err = uc.WriteMsgUnix(b, syscall.UnixRights(int(f.Fd())), nil)
		}
	} else {
		_, err = m.conn.Write(b)
	}
	m.conn.SetWriteDeadline(time.Time{})
	m.wmu.Unlock()
	if err != nil {
		m.forget(id)
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, r.err)
		}
		if out != nil && len(r.ret) > 0 {
			if err := json.Unmarshal(r.ret, out); err != nil {
				return fmt.Errorf("qmp %s: decoding reply: %w", cmd, err)
			}
		}
		return nil
	case <-ctx.Done():
		m.forget(id)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("qmp %s: QEMU did not answer in time (stopped or hung?): %w", cmd, ctx.Err())
		}
		return fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
	}
}

func (m *Monitor) forget(id uint64) {
	m.mu.Lock()
	delete(m.pending, id)
	m.mu.Unlock()
}

// Subscribe returns a buffered channel of events, closed when the
// connection ends, and a function to stop receiving.
func (m *Monitor) Subscribe() (<-chan Event, func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch := make(chan Event, 64)
	if m.closed {
		close(ch)
		return ch, func() {}
	}
	id := m.nextSub
	m.nextSub++
	m.subs[id] = ch
	return ch, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if c, ok := m.subs[id]; ok {
			delete(m.subs, id)
			close(c)
		}
	}
}

// Done is closed when the connection ends.
func (m *Monitor) Done() <-chan struct{} { return m.done }

// Close ends the session.
func (m *Monitor) Close() error { return m.conn.Close() }

// Status is query-status's reply.
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"`
}

// QueryStatus returns the VM run state.
func (m *Monitor) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	err := m.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// CPU is one entry of query-cpus-fast.
type CPU struct {
	Index    int `json:"cpu-index"`
	ThreadID int `json:"thread-id"`
}

// QueryCPUs returns the vCPUs and their host thread ids.
func (m *Monitor) QueryCPUs(ctx context.Context) ([]CPU, error) {
	var c []CPU
	err := m.Execute(ctx, "query-cpus-fast", nil, &c)
	return c, err
}
