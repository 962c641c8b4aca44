package domain

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// ConsoleHistory is how much console output is kept, so `console` shows
// what happened before anyone attached.
const ConsoleHistory = 256 << 10

// Console is the daemon's end of a domain's serial port. The daemon is the
// only client of QEMU's serial socket; it keeps the last ConsoleHistory
// bytes in memory and in console.log (so a daemon restart keeps them too)
// and fans the stream out to any number of attached users.
type Console struct {
	logPath string

	mu      sync.Mutex
	ring    []byte
	logSize int64
	conn    net.Conn
	subs    map[chan []byte]struct{}
}

func newConsole(logPath string) *Console {
	c := &Console{logPath: logPath, subs: map[chan []byte]struct{}{}}
	// Reload the history an earlier daemon wrote: this domain's, after
	// the mark of its creation (the log keeps earlier domains' too).
	if b, err := os.ReadFile(logPath); err == nil {
		if i := bytes.LastIndex(b, []byte(consoleMark)); i >= 0 {
			if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
				b = b[i+j+1:]
			}
		}
		if len(b) > ConsoleHistory {
			b = b[len(b)-ConsoleHistory:]
		}
		c.ring = b
	}
	if fi, err := os.Stat(logPath); err == nil {
		c.logSize = fi.Size()
	}
	return c
}

// consoleMark starts the line written to a console log when a new domain
// of that name is made: the history replayed to viewers starts after it,
// while the log (`ringfence log`) keeps what came before.
const consoleMark = "=== ringfence: a new domain "

// freshConsole is the console of a new domain (create, define, restore,
// an incoming migration): no history yet, and the mark in its log.
func freshConsole(logPath, name string) *Console {
	c := &Console{logPath: logPath, subs: map[chan []byte]struct{}{}}
	if fi, err := os.Stat(logPath); err == nil {
		c.logSize = fi.Size()
	}
	c.writeLog([]byte(fmt.Sprintf("\r\n%s%q (%s) ===\r\n", consoleMark, name, time.Now().UTC().Format(time.RFC3339))))
	return c
}

// Connect attaches to a serial socket and pumps it until it closes.
func (c *Console) Connect(path string) error {
	var conn net.Conn
	var err error
	for i := 0; i < 200; i++ {
		conn, err = net.Dial("unix", path)
		if err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	go c.pump(conn)
	return nil
}

func (c *Console) pump(conn net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			c.append(buf[:n])
		}
		if err != nil {
			break
		}
	}
	c.mu.Lock()
	if c.conn == conn {
		c.conn = nil
	}
	c.mu.Unlock()
	conn.Close()
}

func (c *Console) append(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ring = append(c.ring, p...)
	if len(c.ring) > ConsoleHistory {
		c.ring = append([]byte(nil), c.ring[len(c.ring)-ConsoleHistory:]...)
	}
	c.writeLog(p)
	for ch := range c.subs {
		select {
		case ch <- append([]byte(nil), p...):
		default:
			// A viewer that cannot keep up is cut off rather than
			// stalling the guest's serial port for everyone.
			close(ch)
			delete(c.subs, ch)
		}
	}
}

// consoleLogMax is where console.log is rotated to console.log.1 (one
// generation kept), so a chatty guest cannot fill the disk.
const consoleLogMax = 4 << 20

// moveLog follows console.log to a new path (rename: the caller moved
// the file with its directory).
func (c *Console) moveLog(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logPath = path
}

// writeLog appends to console.log, rotating it when it is full.
func (c *Console) writeLog(p []byte) {
	if c.logSize+int64(len(p)) > consoleLogMax {
		if os.Rename(c.logPath, c.logPath+".1") == nil {
			c.logSize = 0
		}
	}
	f, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return
	}
	f.Write(p)
	f.Close()
	c.logSize += int64(len(p))
}

// Attach returns the history so far and a channel of new output; detach
// with the returned function.
func (c *Console) Attach() ([]byte, <-chan []byte, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan []byte, 4096)
	c.subs[ch] = struct{}{}
	hist := append([]byte(nil), c.ring...)
	return hist, ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.subs[ch]; ok {
			delete(c.subs, ch)
			close(ch)
		}
	}
}

// Write sends input to the guest's serial port.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return 0, io.ErrClosedPipe
	}
	return conn.Write(p)
}

// History returns the kept output.
func (c *Console) History() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.ring...)
}

// Close ends every viewer and the serial connection.
func (c *Console) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
	for ch := range c.subs {
		close(ch)
		delete(c.subs, ch)
	}
}
