// Package qga is a client of the QEMU guest agent (qemu-guest-agent in
// the guest, reached over a virtio-serial port whose host end is a unix
// socket in the VM's run dir). Like the QMP client it is stdlib JSON
// over a socket, but the other end is the guest: it may be absent, not
// yet started, or wedged, so every call has a deadline and a session
// starts with guest-sync-delimited, which also skips what an earlier,
// abandoned call left in the channel.
package qga

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"
)

// DefaultTimeout bounds a call when ctx has no deadline; SyncTimeout
// the handshake that tells an absent agent.
const (
	DefaultTimeout = 5 * time.Second
	SyncTimeout    = 5 * time.Second
)

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// ErrNoAgent is returned when the agent does not answer in time.
var ErrNoAgent = errors.New("the guest agent does not answer (not installed, not started yet, or the guest is busy)")

// Client talks to one agent; calls are serialized by the caller (the
// port takes one connection at a time).
type Client struct {
	Path    string
	Timeout time.Duration // 0: DefaultTimeout
}

// session is one connection, synced.
type session struct {
	c    net.Conn
	r    *bufio.Reader
	stop func() bool // of the context watch
}

func (s *session) close() {
	s.stop()
	s.c.Close()
}

func (cl Client) open(ctx context.Context) (*session, error) {
	// The caller's deadline, else Timeout (DefaultTimeout): a call that
	// runs something in the guest (a password change, a freeze) may
	// need longer than a ping.
	t := cl.Timeout
	if t == 0 {
		t = DefaultTimeout
	}
	deadline := time.Now().Add(t)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", cl.Path)
	if err != nil {
		return nil, fmt.Errorf("guest agent socket: %w", err)
	}
	// An agent that is there answers the sync at once: one that does
	// not within SyncTimeout is absent, whatever the call's deadline.
	c.SetDeadline(earliest(deadline, time.Now().Add(SyncTimeout)))
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	s := &session{c: c, r: bufio.NewReader(c), stop: stop}
	if err := s.sync(); err != nil {
		s.close()
		return nil, err
	}
	if ctx.Err() == nil {
		c.SetDeadline(deadline)
	}
	return s, nil
}

// sync sends guest-sync-delimited and reads up to its 0xFF marker and
// the answer with our id.
func (s *session) sync() error {
	id := rand.Int64N(1 << 40)
	if err := s.send("guest-sync-delimited", map[string]any{"id": id}); err != nil {
		return err
	}
	if _, err := s.r.ReadBytes(0xff); err != nil {
		return noAgent(err)
	}
	for {
		var got struct {
			Return int64 `json:"return"`
		}
		line, err := s.r.ReadBytes('\n')
		if err != nil {
			return noAgent(err)
		}
		if json.Unmarshal(bytes.TrimSpace(line), &got) == nil && got.Return == id {
			return nil
		}
	}
}

func noAgent(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrNoAgent
	}
	return fmt.Errorf("guest agent: %w", err)
}

func (s *session) send(cmd string, args any) error {
	m := map[string]any{"execute": cmd}
	if args != nil {
		m["arguments"] = args
	}
	b, _ := json.Marshal(m)
	if _, err := s.c.Write(append(b, '\n')); err != nil {
		return noAgent(err)
	}
	return nil
}

// call runs one command and decodes its return into out (nil: ignored).
func (s *session) call(cmd string, args, out any) error {
	if err := s.send(cmd, args); err != nil {
		return err
	}
	for {
		line, err := s.r.ReadBytes('\n')
		if err != nil {
			return noAgent(err)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
		}
		if err := json.Unmarshal(line, &resp); err != nil {
			return fmt.Errorf("guest agent: unreadable answer to %s: %v", cmd, err)
		}
		if resp.Error != nil {
			return fmt.Errorf("guest agent: %s: %s", cmd, resp.Error.Desc)
		}
		if out != nil && len(resp.Return) > 0 {
			return json.Unmarshal(resp.Return, out)
		}
		return nil
	}
}

// Call runs one command in its own session.
func (cl Client) Call(ctx context.Context, cmd string, args, out any) error {
	s, err := cl.open(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	return s.call(cmd, args, out)
}

// Ping says whether the agent answers.
func (cl Client) Ping(ctx context.Context) error { return cl.Call(ctx, "guest-ping", nil, nil) }

// Interface is one guest network interface with its addresses.
type Interface struct {
	Name      string    `json:"name"`
	MAC       string    `json:"hardware-address"`
	Addresses []Address `json:"ip-addresses"`
}

// Address is one address of an interface.
type Address struct {
	Type   string `json:"ip-address-type"` // ipv4, ipv6
	IP     string `json:"ip-address"`
	Prefix int    `json:"prefix"`
}

// Interfaces are the guest's network interfaces.
func (cl Client) Interfaces(ctx context.Context) ([]Interface, error) {
	var out []Interface
	err := cl.Call(ctx, "guest-network-get-interfaces", nil, &out)
	return out, err
}

// OSInfo is the guest's os-release.
type OSInfo struct {
	PrettyName    string `json:"pretty-name"`
	KernelRelease string `json:"kernel-release"`
}

// OS describes the guest's operating system.
func (cl Client) OS(ctx context.Context) (OSInfo, error) {
	var out OSInfo
	err := cl.Call(ctx, "guest-get-osinfo", nil, &out)
	return out, err
}

// Shutdown asks the guest to power off. The agent does not answer a
// shutdown that works (it goes down), so only an error answer counts.
func (cl Client) Shutdown(ctx context.Context) error {
	s, err := cl.open(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.send("guest-shutdown", map[string]string{"mode": "powerdown"}); err != nil {
		return err
	}
	s.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	line, err := s.r.ReadBytes('\n')
	if err == nil && bytes.Contains(line, []byte(`"error"`)) {
		return fmt.Errorf("guest agent: guest-shutdown: %s", bytes.TrimSpace(line))
	}
	return nil
}

// Freeze freezes the guest's filesystems (fsfreeze), returning how many.
func (cl Client) Freeze(ctx context.Context) (int, error) {
	var n int
	err := cl.Call(ctx, "guest-fsfreeze-freeze", nil, &n)
	return n, err
}

// Thaw thaws them.
func (cl Client) Thaw(ctx context.Context) (int, error) {
	var n int
	err := cl.Call(ctx, "guest-fsfreeze-thaw", nil, &n)
	return n, err
}

// SetPassword sets a guest user's password (plain text, sent base64 as
// the agent wants it).
func (cl Client) SetPassword(ctx context.Context, user, password string) error {
	return cl.Call(ctx, "guest-set-user-password", map[string]any{"username": user,
		"password": base64.StdEncoding.EncodeToString([]byte(password)), "crypted": false}, nil)
}

// ExecResult is what a command run in the guest did.
type ExecResult struct {
	ExitCode int
	Stdout   []byte
	Stderr   []byte
}

// Exec runs argv in the guest (no shell) with stdin, and waits for it
// until ctx ends (polling guest-exec-status).
func (cl Client) Exec(ctx context.Context, argv []string, stdin []byte) (ExecResult, error) {
	args := map[string]any{"path": argv[0], "arg": argv[1:], "capture-output": true}
	if len(stdin) > 0 {
		args["input-data"] = base64.StdEncoding.EncodeToString(stdin)
	}
	var started struct {
		PID int `json:"pid"`
	}
	if err := cl.Call(ctx, "guest-exec", args, &started); err != nil {
		return ExecResult{}, err
	}
	for {
		var st struct {
			Exited   bool   `json:"exited"`
			ExitCode int    `json:"exitcode"`
			Signal   int    `json:"signal"`
			OutData  string `json:"out-data"`
			ErrData  string `json:"err-data"`
		}
		if err := cl.Call(ctx, "guest-exec-status", map[string]int{"pid": started.PID}, &st); err != nil {
			return ExecResult{}, err
		}
		if st.Exited {
			r := ExecResult{ExitCode: st.ExitCode}
			if st.Signal != 0 {
				r.ExitCode = 128 + st.Signal
			}
			r.Stdout, _ = base64.StdEncoding.DecodeString(st.OutData)
			r.Stderr, _ = base64.StdEncoding.DecodeString(st.ErrData)
			return r, nil
		}
		select {
		case <-ctx.Done():
			return ExecResult{}, fmt.Errorf("guest command %s still running (pid %d in the guest): %w", argv[0], started.PID, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
