package domain

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/engine/fake"
	"github.com/ringfence/ringfence/internal/host"
)

// startFailures are the ways a start fails, from before the VM exists to
// after it is recorded; each is undone whole.
var startFailures = []struct {
	name   string
	inject func(h *fakeHost)
}{
	{"engine-start", func(h *fakeHost) {
		h.eng.FailStart(func(engine.LaunchSpec) error { return errBoom })
	}},
	{"balloon", func(h *fakeHost) {
		h.eng.OnStart(func(i *fake.Instance) { i.Fail(fake.OpSetBalloon, errBoom) })
	}},
	{"resume", func(h *fakeHost) {
		h.eng.OnStart(func(i *fake.Instance) { i.Fail(fake.OpResume, errBoom) })
	}},
	{"store-intent", func(h *fakeHost) {
		h.st.FailUpdates(func(w map[string][]byte) error {
			if bytes.Contains(w[keyDomains+"vm"], []byte(`"starting":`)) && !bytes.Contains(w[keyDomains+"vm"], []byte(`"engine":`)) {
				return errBoom
			}
			return nil
		})
	}},
	{"store-recorded", func(h *fakeHost) {
		h.st.FailUpdates(func(w map[string][]byte) error {
			if bytes.Contains(w[keyDomains+"vm"], []byte(`"engine":`)) {
				return errBoom
			}
			return nil
		})
	}},
}

// heal undoes every injected failure.
func (h *fakeHost) heal() {
	h.eng.FailStart(nil)
	h.eng.OnStart(nil)
	h.st.FailUpdates(nil)
}

// failSpec is a domain whose start sets the balloon (memory < maxmem).
func (h *fakeHost) failSpec() api.DomainSpec {
	s := h.spec("vm", "", "", "")
	s.MaxMemMiB = 128
	return s
}

// A create that fails leaves nothing: no record, no ledger entry, no VM,
// no run dir, the ID not used up.
func TestFakeCreateFailureRollsBack(t *testing.T) {
	for _, f := range startFailures {
		t.Run(f.name, func(t *testing.T) {
			h := newFakeHost(t, nil)
			f.inject(h)
			_, err := h.m.Create(context.Background(), api.CreateRequest{Spec: h.failSpec()})
			if err == nil || !strings.Contains(err.Error(), "boom") {
				t.Fatalf("create: %v, want the injected failure", err)
			}
			h.gone("vm")
			if n := h.m.Count(); n != 0 {
				t.Fatalf("%d domains after a failed create", n)
			}
			if keys := h.st.Keys(keyDomains); len(keys) != 0 {
				t.Fatalf("records left: %v", keys)
			}
			if live := h.eng.Live(); len(live) != 0 {
				t.Fatalf("%d VMs left running", len(live))
			}
			h.heal()
			if v := h.create(h.failSpec()); v.ID != 1 {
				t.Fatalf("the next create got ID %d: the failed one used one up", v.ID)
			}
		})
	}
}

// A defined domain whose start fails stays defined and stopped, holding
// nothing; it starts once the cause is gone.
func TestFakeDefinedStartFailureKeepsDefinition(t *testing.T) {
	for _, f := range startFailures {
		t.Run(f.name, func(t *testing.T) {
			h := newFakeHost(t, nil)
			ctx := context.Background()
			if _, err := h.m.Define(ctx, h.failSpec(), ""); err != nil {
				t.Fatal(err)
			}
			f.inject(h)
			if _, err := h.m.Start(ctx, "vm", false); err == nil || !strings.Contains(err.Error(), "boom") {
				t.Fatalf("start: %v, want the injected failure", err)
			}
			v := h.kept("vm", api.StateShutdown)
			if !v.Defined || v.LastReason != reasonNeverStarted {
				t.Fatalf("after a failed start: %+v", v)
			}
			if _, err := h.st.Get(ctx, keyDefinitions+"vm"); err != nil {
				t.Fatalf("the definition is gone: %v", err)
			}
			if live := h.eng.Live(); len(live) != 0 {
				t.Fatalf("%d VMs left running", len(live))
			}
			h.heal()
			if _, err := h.m.Start(ctx, "vm", false); err != nil {
				t.Fatal(err)
			}
			h.running("vm", 1)
		})
	}
}

// A persistent create whose start fails leaves no definition either.
func TestFakePersistentCreateFailureLeavesNothing(t *testing.T) {
	h := newFakeHost(t, nil)
	h.eng.FailStart(func(engine.LaunchSpec) error { return errBoom })
	if _, err := h.m.Create(context.Background(), api.CreateRequest{Spec: h.spec("vm", "", "", ""), Persistent: true}); err == nil {
		t.Fatal("create succeeded")
	}
	h.gone("vm")
	if keys := h.st.Keys(keyDefinitions); len(keys) != 0 {
		t.Fatalf("definitions left: %v", keys)
	}
}

// A rename-restart whose start fails keeps the old incarnation and ends
// the domain (a transient one is gone).
func TestFakeRenameRestartFails(t *testing.T) {
	h := newFakeHost(t, nil)
	h.create(h.spec("vm", "", "", api.ActionRenameRestart))
	h.eng.FailStart(func(engine.LaunchSpec) error { return errBoom })
	h.end("vm", (*fake.Instance).GuestPanic)
	h.gone("vm")
	if v := h.get("vm--incarnation-1"); v.State != api.StateCrashed {
		t.Fatalf("old incarnation: %+v", v)
	}
}

// A second create of a name that exists is refused and leaves the first
// alone.
func TestFakeCreateConflict(t *testing.T) {
	h := newFakeHost(t, nil)
	h.create(h.spec("vm", "", "", ""))
	if _, err := h.m.Create(context.Background(), api.CreateRequest{Spec: h.spec("vm", "", "", "")}); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
	h.running("vm", 1)
}

// A domain the daemon runs is re-attached by the next daemon, which then
// applies its on_* action when it ends.
func TestFakeRecoverReattaches(t *testing.T) {
	h := newFakeHost(t, nil)
	first := h.create(h.spec("vm", "", "", api.ActionPreserve))
	h.daemonRestart()
	v := h.running("vm", 1)
	if v.PID != first.PID || v.ID != first.ID {
		t.Fatalf("re-attached %+v, was %+v", v, first)
	}
	h.end("vm", (*fake.Instance).GuestPanic)
	h.kept("vm", api.StateCrashed)
}

// A domain whose VM ended while no daemon ran gets on_crash; after a host
// reboot it is kept stopped instead, even a transient one.
func TestFakeRecoverLostWhileAway(t *testing.T) {
	for _, tc := range []struct {
		name    string
		onCrash string
		reboot  bool
		check   func(h *fakeHost)
	}{
		{"destroy", api.ActionDestroy, false, func(h *fakeHost) { h.gone("vm") }},
		{"preserve", api.ActionPreserve, false, func(h *fakeHost) {
			if v := h.kept("vm", api.StateCrashed); !strings.Contains(v.LastReason, "while the daemon was not running") {
				t.Fatalf("last reason %q", v.LastReason)
			}
		}},
		{"restart", api.ActionRestart, false, func(h *fakeHost) { h.running("vm", 2) }},
		{"host-rebooted", api.ActionDestroy, true, func(h *fakeHost) {
			if v := h.kept("vm", api.StateShutdown); v.LastReason != reasonHostReboot {
				t.Fatalf("last reason %q", v.LastReason)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t, nil)
			h.create(h.spec("vm", "", "", tc.onCrash))
			h.eng.Forget()
			h.vm("vm").GuestPanic()
			if tc.reboot {
				os.WriteFile(h.o.BootIDFile, []byte("99999999-2222-3333-4444-555555555555\n"), 0o644)
			}
			h.daemonRestart()
			tc.check(h)
		})
	}
}

// daemonRestart replaces the manager by a new one on the same store,
// engine and directories, as a daemon that restarts: the old one's
// handles are dropped (its watchers wait forever), the new one recovers.
func (h *fakeHost) daemonRestart() {
	h.t.Helper()
	h.eng.Forget()
	h.ledger = host.NewLedger(4096, 0, 4, 1)
	h.o.Ledger = h.ledger
	h.m = New(h.o)
	if err := h.m.Recover(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

// Bugs these tests found, fixed: each subtest fails if it comes back.
func TestFakeFoundBugs(t *testing.T) {
	t.Run("stopped-domain-removed-via-dying", func(t *testing.T) {
		h := newFakeHost(t, nil)
		h.create(h.spec("vm", api.ActionPreserve, "", ""))
		h.end("vm", (*fake.Instance).GuestPoweroff)
		if err := h.m.Destroy(context.Background(), "vm"); err != nil {
			t.Fatal(err)
		}
		h.gone("vm")
		if strings.Contains(h.logs.String(), "(a bug)") {
			t.Fatalf("removing a stopped domain took an edge the state table lacks:\n%s", h.logs.String())
		}
	})
	t.Run("intent-save-failure-uses-up-an-id", func(t *testing.T) {
		h := newFakeHost(t, nil)
		h.st.FailUpdates(func(map[string][]byte) error { return errBoom })
		if _, err := h.m.Create(context.Background(), api.CreateRequest{Spec: h.spec("vm", "", "", "")}); err == nil {
			t.Fatal("create succeeded")
		}
		h.heal()
		if v := h.create(h.spec("vm", "", "", "")); v.ID != 1 {
			t.Fatalf("a start whose intent could not be saved kept the ID it took: the next create got ID %d", v.ID)
		}
	})
	t.Run("destroy-races-the-exit-it-causes", func(t *testing.T) {
		// Destroy kills, then takes the domain's lock: when the watcher
		// handles the exit first, Destroy must take it as done (it was:
		// not "not running", not a second removal). The fake's Kill
		// delivers the exit at once, which the contract allows.
		h := newFakeHost(t, nil)
		ctx := context.Background()
		if _, err := h.m.Define(ctx, h.spec("vm", "", "", ""), ""); err != nil {
			t.Fatal(err)
		}
		conflicts := 0
		for i := 0; i < 20; i++ {
			if _, err := h.m.Start(ctx, "vm", false); err != nil {
				t.Fatal(err)
			}
			if err := h.m.Destroy(ctx, "vm"); errors.Is(err, api.ErrConflict) {
				conflicts++
			} else if err != nil {
				t.Fatal(err)
			}
			h.kept("vm", api.StateShutdown)
		}
		if conflicts > 0 {
			t.Fatalf("%d of 20 destroys of a running defined domain answered \"not running\"", conflicts)
		}
	})
}
