package cli

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// syncBuf is a stderr the interrupt's goroutines may write to.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Ctrl-C while a verb waits: the first cancels the operation followed
// (DELETE of it) and waits on; the second detaches, saying how to reach
// it; before any operation, the first ends the call at once.
func TestInterrupt(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	cancelled := make(chan string, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "DELETE" && strings.HasPrefix(r.URL.Path, "/1.0/operations/") {
			cancelled <- strings.TrimPrefix(r.URL.Path, "/1.0/operations/")
		}
		json.NewEncoder(w).Encode(api.Operation{ID: "op1", Status: api.OpRunning})
	})}
	go srv.Serve(ln)
	defer srv.Close()

	var stderr syncBuf
	e := &env{stderr: &stderr, socket: sock}
	in := newInterrupt(e)
	in.follow(api.Operation{ID: "0123456789abcdef0123456789abcdef"})
	in.sigs <- os.Interrupt
	select {
	case id := <-cancelled:
		if id != "0123456789abcdef0123456789abcdef" {
			t.Fatalf("cancelled %q", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first Ctrl-C cancelled nothing")
	}
	if in.ctx.Err() != nil || !strings.Contains(stderr.String(), "cancelling operation 0123456789abcdef0123456789abcdef") {
		t.Fatalf("after the first Ctrl-C: ctx %v, stderr %q", in.ctx.Err(), stderr.String())
	}
	in.sigs <- os.Interrupt
	waitDone(t, in.ctx)
	if !in.end() || !strings.Contains(stderr.String(), "`ringfence operation wait 0123456789abcdef0123456789abcdef`") {
		t.Fatalf("after the second Ctrl-C: stderr %q", stderr.String())
	}

	before := newInterrupt(&env{stderr: &stderr, socket: sock})
	before.sigs <- os.Interrupt
	waitDone(t, before.ctx)
	if before.end() {
		t.Fatal("a Ctrl-C before any operation detached from one")
	}
}

func waitDone(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the call was not ended")
	}
}
