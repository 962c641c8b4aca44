package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
)

// interrupt is Ctrl-C while a verb waits on the daemon, as xl does for a
// migration: the first cancels the operation being waited for (or, before
// one is started, the transfer under way); the second leaves it running
// and detaches, saying how to wait for or cancel it.
type interrupt struct {
	e      *env
	ctx    context.Context
	detach context.CancelFunc
	sigs   chan os.Signal

	mu       sync.Mutex
	op       string // the operation followed ("" before one is started)
	detached string // the operation left running by a second Ctrl-C
}

// waitCtx is the context of a call that may wait on an operation or a
// transfer: Ctrl-C acts on it as interrupt says.
func (e *env) waitCtx() context.Context {
	if e.intr == nil {
		e.intr = newInterrupt(e)
		signal.Notify(e.intr.sigs, os.Interrupt)
	}
	return e.intr.ctx
}

// newInterrupt acts on what arrives on its sigs.
func newInterrupt(e *env) *interrupt {
	c, cancel := context.WithCancel(context.Background())
	in := &interrupt{e: e, detach: cancel, sigs: make(chan os.Signal, 2)}
	in.ctx = client.Watch(c, in.follow)
	go in.loop()
	return in
}

func (in *interrupt) follow(op api.Operation) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.op = op.ID
}

func (in *interrupt) loop() {
	n := 0
	for range in.sigs {
		n++
		in.mu.Lock()
		id := in.op
		if n == 1 && id != "" {
			in.mu.Unlock()
			fmt.Fprintf(in.e.stderr, "\ncancelling operation %s... (Ctrl-C again leaves it running)\n", id)
			go func() {
				if _, err := in.e.client().CancelOperation(context.Background(), id); err != nil {
					fmt.Fprintf(in.e.stderr, "cannot cancel operation %s: %v\n", id, err)
				}
			}()
			continue
		}
		in.detached = id
		in.mu.Unlock()
		in.detach() // no operation yet: the request (a transfer) is cancelled
	}
}

// end stops taking Ctrl-C and says whether the verb was detached from
// a running operation (having printed how to reach it).
func (in *interrupt) end() bool {
	signal.Stop(in.sigs)
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.detached == "" {
		return false
	}
	fmt.Fprintf(in.e.stderr, "\nleft operation %s running: `ringfence operation wait %s` waits for it, `ringfence operation cancel %s` stops it\n", in.detached, in.detached, in.detached)
	return true
}
