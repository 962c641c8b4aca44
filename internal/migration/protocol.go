// Package migration is the live-migration protocol between two daemons
// and its transport: the messages of the control channel, the data
// connections' preface, and the relay that carries an encrypted stream
// to and from QEMU. What each side does with them (the steps and the
// handover rules) is the domain manager's: internal/domain/migrate_out.go
// and migrate_in.go.
//
// The control channel is a connection the caller has already
// authenticated (mutual TLS); the state itself goes on a second
// connection: by default another mutual-TLS connection between the
// daemons, each relaying to its QEMU through a socket pair (see
// relay.go); with --plain-stream a plain TCP connection handed to the
// QEMUs themselves, token-bound to the control channel (see data.go).
//
//	source -> dest   {"spec":..., "accel":...}          Header
//	dest -> source   {"ok":true,"token":T}  (validated and admitted)
//	                 or {"error":...}       (nothing was created)
//	(--with-storage) {"disks_ready":true,"nbd_key":K} (NBD served; the
//	                 source mirrors the disks over data connections T.nbd)
//	source -> dest   data connection named by T (the source QEMU is made
//	                 ready to send while the destination QEMU starts)
//	dest -> source   {"listening":true}     (the source QEMU starts sending)
//	source -> dest   {"go":true}      (the stream is complete; handover)
//	dest -> source   {"running":true} (the guest runs on dest)
//	                 or {"error":...} (dest removed everything)
//
// Each message is one line of JSON, at most MaxMessage bytes.
package migration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// Header opens a migration: what the source offers.
type Header struct {
	Spec  api.DomainSpec `json:"spec"`
	Accel string         `json:"accel"`
	Plain bool           `json:"plain,omitempty"` // the stream goes without QEMU's TLS
	// Storage lists the disks to copy (--with-storage); StorageDir is
	// where the destination puts them ("" = the same paths).
	Storage    []Disk `json:"storage,omitempty"`
	StorageDir string `json:"storage_dir,omitempty"`
	// Tenant owns the domain ("" = the host): the destination admits it
	// into that tenant's reservation there (refused if it has none).
	Tenant string `json:"tenant,omitempty"`
	// Usage are the domain's running usage totals as the migration
	// starts; Go carries them again, final, at the handover.
	Usage *api.UsageCounters `json:"usage,omitempty"`
}

// Disk is one disk to copy (--with-storage).
type Disk struct {
	ID     string `json:"id"` // guest disk, e.g. vda
	Path   string `json:"path"`
	Format string `json:"format"`
	SizeB  int64  `json:"size"` // virtual size
}

// Go is the source's handover: its QEMU has sent everything (and the
// disk copies are final), its guest is stopped and it will not resume it
// unless the destination answers with an error. The destination runs the
// guest only after this; without it (the control channel closes) it drops
// its copy.
type Go struct {
	Go bool `json:"go"`
	// Usage are the domain's usage totals at the handover (its guest
	// stopped): the destination's records continue from them, the
	// source's last record ends with them.
	Usage *api.UsageCounters `json:"usage,omitempty"`
}

// Reply is every message the destination sends.
type Reply struct {
	OK      bool   `json:"ok,omitempty"`
	Token   string `json:"token,omitempty"`
	Running bool   `json:"running,omitempty"`
	// DisksReady: the destination's NBD server is up (--with-storage).
	// NBDKey is the pre-shared key its TLS takes, made for this migration
	// and sent over the authenticated control channel (so no host needs
	// the CA key to mint QEMU certificates).
	DisksReady bool   `json:"disks_ready,omitempty"`
	NBDKey     string `json:"nbd_key,omitempty"`
	// Listening: the destination QEMU reads the memory stream; the source
	// starts it only then (see engine.IncomingOptions.Listening).
	Listening bool   `json:"listening,omitempty"`
	Error     string `json:"error,omitempty"`
	Class     string `json:"class,omitempty"`
}

// MaxMessage bounds a control message (a header carries a domain spec).
const MaxMessage = 1 << 20

// Control is the control channel: one JSON line per message each way.
type Control struct {
	net.Conn
	br *bufio.Reader
}

// NewControl reads and writes messages on c.
func NewControl(c net.Conn) *Control {
	return &Control{Conn: c, br: bufio.NewReader(c)}
}

// Send writes one message.
func (c *Control) Send(v any) error {
	return writeLine(c.Conn, v)
}

func writeLine(w io.Writer, v any) error {
	b, _ := json.Marshal(v)
	_, err := w.Write(append(b, '\n'))
	return err
}

// ReadHeader reads the source's header within timeout (the connection
// left the HTTP server's limits when it was upgraded). A line that is
// not a header is refused (see Refuse).
func (c *Control) ReadHeader(timeout time.Duration) (Header, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	line, err := readBounded(c.br, MaxMessage)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		return Header{}, err
	}
	var hdr Header
	if err := json.Unmarshal(line, &hdr); err != nil {
		return hdr, c.Refuse(api.Errorf(api.ErrInvalid, "bad migration header: %v", err))
	}
	return hdr, nil
}

// Refuse answers the header with err and its class (nothing was
// created); it returns err.
func (c *Control) Refuse(err error) error {
	_, class := api.StatusOf(err)
	c.Send(Reply{Error: err.Error(), Class: class})
	return err
}

// ReadReply reads the destination's next message.
func (c *Control) ReadReply(rep *Reply) error {
	line, err := readBounded(c.br, MaxMessage)
	if err != nil {
		return fmt.Errorf("connection closed: %w", err)
	}
	*rep = Reply{}
	return json.Unmarshal(line, rep)
}

// AwaitGo reads the source's messages until the channel closes, calling
// handover on the first "go" (a repeated one is ignored).
func (c *Control) AwaitGo(handover func(Go)) {
	var once sync.Once
	for {
		line, err := readBounded(c.br, MaxMessage)
		if err != nil {
			return
		}
		var g Go
		if json.Unmarshal(line, &g) == nil && g.Go {
			once.Do(func() { handover(g) })
		}
	}
}

// readBounded reads one line of at most max bytes.
func readBounded(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, fmt.Errorf("a migration message over %d bytes", max)
		}
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}
