package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeQEMU serves one QMP connection on a real unix socket. handle gets
// each command and returns the raw reply line(s) to send (ids filled in).
func fakeQEMU(t *testing.T, handle func(cmd string, id json.RawMessage) []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}` + "\n"))
		r := bufio.NewReader(c)
		dec := json.NewDecoder(r)
		for {
			var req struct {
				Execute string          `json:"execute"`
				ID      json.RawMessage `json:"id"`
			}
			if err := dec.Decode(&req); err != nil {
				return
			}
			for _, line := range handle(req.Execute, req.ID) {
				c.Write([]byte(strings.ReplaceAll(line, "ID", string(req.ID)) + "\n"))
			}
		}
	}()
	return path
}

func TestExecuteAndEvents(t *testing.T) {
	big := strings.Repeat("x", 300000) // larger than any line-scanner buffer
	path := fakeQEMU(t, func(cmd string, id json.RawMessage) []string {
		switch cmd {
		case "qmp_capabilities":
			return []string{`{"return": {}, "id": ID}`}
		case "query-status":
			// An event arrives before the reply; both must be delivered.
			return []string{`{"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}}`, `{"return": {"running": false, "status": "paused"}, "id": ID}`}
		case "query-big":
			return []string{`{"return": {"blob": "` + big + `"}, "id": ID}`}
		case "bad":
			return []string{`{"error": {"class": "CommandNotFound", "desc": "The command bad has not been found"}, "id": ID}`}
		case "hang":
			return nil
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ev1, stop1 := m.Subscribe()
	ev2, _ := m.Subscribe()
	defer stop1()
	st, err := m.QueryStatus(ctx)
	if err != nil || st.Status != "paused" {
		t.Fatalf("status %+v %v", st, err)
	}
	for _, ch := range []<-chan Event{ev1, ev2} {
		select {
		case e := <-ch:
			if e.Name != "STOP" {
				t.Fatalf("event %+v", e)
			}
		case <-time.After(time.Second):
			t.Fatal("event not delivered to every subscriber")
		}
	}
	var out struct{ Blob string }
	if err := m.Execute(ctx, "query-big", nil, &out); err != nil || len(out.Blob) != len(big) {
		t.Fatalf("large reply: %v (%d bytes)", err, len(out.Blob))
	}
	err = m.Execute(ctx, "bad", nil, nil)
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Fatalf("error class lost: %v", err)
	}
	sctx, scancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer scancel()
	if err := m.Execute(sctx, "hang", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
	// The monitor still works after a timed-out command.
	if _, err := m.QueryStatus(ctx); err != nil {
		t.Fatalf("after timeout: %v", err)
	}
}

func TestClosedConnection(t *testing.T) {
	path := fakeQEMU(t, func(cmd string, id json.RawMessage) []string {
		if cmd == "qmp_capabilities" {
			return []string{`{"return": {}, "id": ID}`}
		}
		return nil
	})
	ctx := context.Background()
	m, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- m.Execute(ctx, "quit", nil, nil) }()
	time.Sleep(50 * time.Millisecond)
	m.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) && err == nil {
			t.Fatalf("pending command on a closed monitor: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("pending command not released when the connection closed")
	}
	<-m.Done()
}
