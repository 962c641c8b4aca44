package domain

// A manager on the fake engine and the in-memory store: its paths (on_*
// actions, rollbacks, the crash-loop brake, recovery) tested without root
// or QEMU.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/engine/fake"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/store/memstore"
)

// fakeHost is a manager with everything it runs on in memory.
type fakeHost struct {
	t      *testing.T
	m      *Manager
	eng    *fake.Engine
	st     *memstore.Mem
	ledger *host.Ledger
	kernel string
	logs   *logSink
	o      Options
}

// logSink keeps what the manager logs, so a test can look at it and a
// bug the manager reports about itself fails the test.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// newFakeHost makes a manager; mod, when set, changes its Options.
func newFakeHost(t *testing.T, mod func(*Options)) *fakeHost {
	t.Helper()
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("not a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	bootID := filepath.Join(dir, "boot_id")
	os.WriteFile(bootID, []byte("11111111-2222-3333-4444-555555555555\n"), 0o644)
	logs := &logSink{}
	h := &fakeHost{t: t, eng: fake.New(), st: memstore.New(), ledger: host.NewLedger(4096, 0, 4, 1), kernel: kernel, logs: logs}
	h.o = Options{
		Store: h.st, Engine: h.eng, Ledger: h.ledger, Accel: host.Accel{Name: "tcg"},
		RunDir: filepath.Join(dir, "run"), StateDir: filepath.Join(dir, "state"), LogDir: filepath.Join(dir, "log"),
		BootIDFile: bootID, HostCPUs: 4,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&h.o)
	}
	h.m = New(h.o)
	if err := h.m.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Destroyed, not killed (a kill is a crash: on_crash would act),
		// and every exit handled before the directories go.
		// Only the running ones: a kept domain holds nothing (and its
		// destroy has a test of its own).
		for _, v := range h.m.List(true) {
			if v.PID != 0 {
				h.m.Destroy(context.Background(), v.Spec.Name)
			}
		}
		done := make(chan struct{})
		go func() { h.m.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the manager's watchers did not finish")
		}
		for _, i := range h.eng.Live() {
			i.Kill()
		}
		if s := h.logs.String(); strings.Contains(s, "(a bug)") {
			t.Errorf("the manager reported a bug of its own:\n%s", s)
		}
	})
	return h
}

// spec is a small domain booting the fake kernel.
func (h *fakeHost) spec(name, onPoweroff, onReboot, onCrash string) api.DomainSpec {
	return api.DomainSpec{Name: name, Kernel: h.kernel, MemoryMiB: 64, VCPUs: 1,
		OnPoweroff: onPoweroff, OnReboot: onReboot, OnCrash: onCrash}
}

func (h *fakeHost) create(spec api.DomainSpec) api.Domain {
	h.t.Helper()
	v, err := h.m.Create(context.Background(), api.CreateRequest{Spec: spec})
	if err != nil {
		h.t.Fatalf("create %s: %v", spec.Name, err)
	}
	return v.(api.Domain)
}

// vm is the live fake VM of a domain.
func (h *fakeHost) vm(name string) *fake.Instance {
	h.t.Helper()
	i := h.eng.Find(name)
	if i == nil {
		h.t.Fatalf("%s has no live VM", name)
	}
	return i
}

// end ends name's current incarnation with how and waits until the
// manager has handled the exit (its action carried out).
func (h *fakeHost) end(name string, how func(*fake.Instance)) {
	h.t.Helper()
	d, err := h.m.get(name)
	if err != nil {
		h.t.Fatal(err)
	}
	d.mu.Lock()
	ended := d.ended
	d.mu.Unlock()
	how(h.vm(name))
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		h.t.Fatalf("the exit of %s was not handled", name)
	}
}

// get is the domain's view (fatal when it is gone).
func (h *fakeHost) get(name string) api.Domain {
	h.t.Helper()
	v, err := h.m.Get(name)
	if err != nil {
		h.t.Fatalf("get %s: %v", name, err)
	}
	return v
}

// gone asserts name is not a domain any more and nothing is left of it.
func (h *fakeHost) gone(name string) {
	h.t.Helper()
	if _, err := h.m.Get(name); !errors.Is(err, api.ErrNotFound) {
		h.t.Fatalf("%s is still there (%v)", name, err)
	}
	if _, ok := h.record(name); ok {
		h.t.Fatalf("%s is gone but its record is kept", name)
	}
	if h.held(name) {
		h.t.Fatalf("%s is gone but holds the ledger", name)
	}
	if h.eng.Find(name) != nil {
		h.t.Fatalf("%s is gone but its VM runs", name)
	}
	if _, err := os.Stat(h.m.runDir(name)); err == nil {
		h.t.Fatalf("%s is gone but its run dir is left", name)
	}
}

// record is name's stored runtime record.
func (h *fakeHost) record(name string) (record, bool) {
	b, err := h.st.Get(context.Background(), keyDomains+name)
	if err != nil {
		return record{}, false
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		h.t.Fatalf("record of %s: %v", name, err)
	}
	return rec, true
}

// held reports whether name has an entry in the ledger.
func (h *fakeHost) held(name string) bool {
	for _, e := range h.ledger.Snapshot().Entries {
		if e.Domain == name {
			return true
		}
	}
	return false
}

// kept asserts name is kept stopped in state, holding nothing.
func (h *fakeHost) kept(name string, state api.State) api.Domain {
	h.t.Helper()
	v := h.get(name)
	if v.State != state || v.PID != 0 {
		h.t.Fatalf("%s: state %s pid %d, want %s and no VM", name, v.State, v.PID, state)
	}
	if h.held(name) {
		h.t.Fatalf("%s is stopped but holds the ledger", name)
	}
	if h.eng.Find(name) != nil {
		h.t.Fatalf("%s is stopped but its VM runs", name)
	}
	if v.Defined {
		if _, ok := h.record(name); ok {
			h.t.Fatalf("defined %s is stopped but has a runtime record", name)
		}
		return v
	}
	rec, ok := h.record(name)
	if !ok || rec.State != state || rec.Engine != nil || rec.Ending != nil || rec.Starting != nil {
		h.t.Fatalf("record of kept %s: %+v (stored %v)", name, rec, ok)
	}
	return v
}

// running asserts name runs in its incarnation gen (its generation),
// recorded as done starting, holding the ledger.
func (h *fakeHost) running(name string, gen int) api.Domain {
	h.t.Helper()
	v := h.get(name)
	if v.State != api.StateRunning && v.State != api.StateBlocked || v.PID == 0 {
		h.t.Fatalf("%s: state %s pid %d, want running", name, v.State, v.PID)
	}
	if !h.held(name) {
		h.t.Fatalf("%s runs without its ledger entry", name)
	}
	rec, ok := h.record(name)
	if !ok || rec.Generation != gen || rec.Engine == nil || rec.Starting != nil || rec.Ending != nil || rec.ID != v.ID {
		h.t.Fatalf("record of running %s: generation %d id %d engine %s starting %+v ending %+v (stored %v); want generation %d id %d",
			name, rec.Generation, rec.ID, rec.Engine, rec.Starting, rec.Ending, ok, gen, v.ID)
	}
	if st, _ := h.vm(name).Status(context.Background()); st.String() != "running" {
		h.t.Fatalf("%s's VM is %s", name, st)
	}
	return v
}

var errBoom = errors.New("boom")

type engineSpec = engine.LaunchSpec
