package cli

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

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

	// A file: the interrupt's goroutines write to it, the test reads it.
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	said := func() string { b, _ := os.ReadFile(stderr.Name()); return string(b) }
	e := &env{stderr: stderr, socket: sock}
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
	if in.ctx.Err() != nil || !strings.Contains(said(), "cancelling operation 0123456789abcdef0123456789abcdef") {
		t.Fatalf("after the first Ctrl-C: ctx %v, stderr %q", in.ctx.Err(), said())
	}
	in.sigs <- os.Interrupt
	waitDone(t, in.ctx)
	if !in.end() || !strings.Contains(said(), "`ringfence operation wait 0123456789abcdef0123456789abcdef`") {
		t.Fatalf("after the second Ctrl-C: stderr %q", said())
	}

	before := newInterrupt(&env{stderr: stderr, socket: sock})
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
