package benchenv

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Console is a guest's serial line: commands in, output collected, so a
// benchmark can wait for a marker anywhere after a given offset.
type Console struct {
	W    io.Writer
	mu   sync.Mutex
	out  strings.Builder
	more chan struct{}
}

// NewConsole collects what r says (until it ends) and sends to w.
func NewConsole(r io.Reader, w io.Writer) *Console {
	c := &Console{W: w, more: make(chan struct{}, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			c.mu.Lock()
			c.out.Write(buf[:n])
			c.mu.Unlock()
			select {
			case c.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return c
}

// Len is how much output there is so far: an offset for WaitFor.
func (c *Console) Len() int { c.mu.Lock(); defer c.mu.Unlock(); return c.out.Len() }

// Output is everything said so far.
func (c *Console) Output() string { c.mu.Lock(); defer c.mu.Unlock(); return c.out.String() }

// WaitFor waits until text appears after offset from, and returns the
// offset just past it.
func (c *Console) WaitFor(text string, from int, timeout time.Duration) (int, error) {
	deadline := time.After(timeout)
	for {
		s := c.Output()
		if from <= len(s) {
			if i := strings.Index(s[from:], text); i >= 0 {
				return from + i + len(text), nil
			}
		}
		select {
		case <-c.more:
		case <-deadline:
			return 0, fmt.Errorf("%q not seen within %s; console tail:\n%s", text, timeout, s[max(0, len(s)-800):])
		}
	}
}

// Do runs a shell line and waits for marker after it.
func (c *Console) Do(line, marker string, timeout time.Duration) error {
	off := c.Len()
	fmt.Fprintf(c.W, "%s\n", line)
	_, err := c.WaitFor(marker, off, timeout)
	return err
}
