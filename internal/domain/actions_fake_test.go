package domain

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine/fake"
)

// Every on_* action after every kind of end, for a created (transient)
// domain and a defined one.
func TestFakeOnActions(t *testing.T) {
	ends := []struct {
		name  string
		how   func(*fake.Instance)
		state api.State // what a kept domain is after it
	}{
		{"poweroff", (*fake.Instance).GuestPoweroff, api.StateShutdown},
		{"reboot", (*fake.Instance).GuestReboot, api.StateShutdown},
		{"crash", (*fake.Instance).GuestPanic, api.StateCrashed},
		{"vmm-died", func(i *fake.Instance) { i.Die("segfault") }, api.StateCrashed},
	}
	actions := []string{api.ActionDestroy, api.ActionPreserve, api.ActionRestart, api.ActionRenameRestart}
	for _, end := range ends {
		for _, action := range actions {
			for _, defined := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/defined=%v", end.name, action, defined)
				t.Run(name, func(t *testing.T) {
					h := newFakeHost(t, nil)
					onPoweroff, onReboot, onCrash := api.ActionPreserve, api.ActionPreserve, api.ActionPreserve
					switch end.name {
					case "poweroff":
						onPoweroff = action
					case "reboot":
						onReboot = action
					default:
						onCrash = action
					}
					spec := h.spec("vm", onPoweroff, onReboot, onCrash)
					var first api.Domain
					if defined {
						if _, err := h.m.Define(context.Background(), spec, ""); err != nil {
							t.Fatal(err)
						}
						v, err := h.m.Start(context.Background(), "vm", false)
						if err != nil {
							t.Fatal(err)
						}
						first = v
					} else {
						first = h.create(spec)
					}
					h.running("vm", 1)
					h.end("vm", end.how)
					switch action {
					case api.ActionDestroy:
						if defined {
							v := h.kept("vm", end.state)
							if !v.Defined {
								t.Fatal("a defined domain lost its definition")
							}
						} else {
							h.gone("vm")
						}
					case api.ActionPreserve:
						v := h.kept("vm", end.state)
						if !strings.HasPrefix(v.LastReason, map[string]string{"poweroff": "poweroff", "reboot": "reboot", "crash": "crash: guest-panic", "vmm-died": "crash: qemu exited"}[end.name]) {
							t.Fatalf("last reason %q", v.LastReason)
						}
					case api.ActionRestart:
						v := h.running("vm", 2)
						if v.ID == first.ID || v.PID == first.PID || len(h.eng.Starts()) != 2 {
							t.Fatalf("not a new incarnation: id %d->%d pid %d->%d, %d starts", first.ID, v.ID, first.PID, v.PID, len(h.eng.Starts()))
						}
					case api.ActionRenameRestart:
						h.running("vm", 2)
						old := h.get("vm--incarnation-1")
						if old.State != end.state || old.PID != 0 || old.ID != first.ID {
							t.Fatalf("the old incarnation: %+v", old)
						}
						if rec, ok := h.record("vm--incarnation-1"); !ok || rec.State != end.state || rec.Ending != nil {
							t.Fatalf("record of the old incarnation: %+v (stored %v)", rec, ok)
						}
					}
				})
			}
		}
	}
}

// A destroy is a destroy, whatever on_crash says.
func TestFakeDestroyIsNotACrash(t *testing.T) {
	h := newFakeHost(t, nil)
	h.create(h.spec("vm", api.ActionRestart, api.ActionRestart, api.ActionRestart))
	if err := h.m.Destroy(context.Background(), "vm"); err != nil {
		t.Fatal(err)
	}
	h.gone("vm")
	if n := len(h.eng.Starts()); n != 1 {
		t.Fatalf("%d starts: the destroy restarted it", n)
	}
}

// A restart that fails keeps the domain, crashed, saying why, holding
// nothing.
func TestFakeRestartFails(t *testing.T) {
	h := newFakeHost(t, nil)
	h.create(h.spec("vm", api.ActionDestroy, api.ActionRestart, api.ActionRestart))
	h.eng.FailStart(func(s engineSpec) error { return errBoom })
	h.end("vm", (*fake.Instance).GuestPanic)
	v := h.kept("vm", api.StateCrashed)
	if !strings.Contains(v.LastReason, "restart failed") || !strings.Contains(v.LastReason, "boom") {
		t.Fatalf("last reason %q", v.LastReason)
	}
	// It can be started again once the engine works.
	h.eng.FailStart(nil)
	if _, err := h.m.Start(context.Background(), "vm", false); err != nil {
		t.Fatal(err)
	}
	h.running("vm", 2)
}

// The crash-loop brake: the RestartLimit-th guest-caused restart within
// the window is not made; the domain stays crashed with its console's
// last lines, and an admin's start clears the count.
func TestFakeCrashLoopBrake(t *testing.T) {
	h := newFakeHost(t, func(o *Options) { o.RestartLimit, o.RestartWindow = 3, time.Hour })
	h.create(h.spec("vm", api.ActionDestroy, api.ActionRestart, api.ActionRestart))
	crash := func(line string) {
		h.end("vm", func(i *fake.Instance) {
			h.print("vm", i, line)
			i.GuestPanic()
		})
	}
	crash("first panic")
	h.running("vm", 2)
	h.end("vm", (*fake.Instance).GuestReboot) // the guest's own reset counts too
	h.running("vm", 3)
	if rec, _ := h.record("vm"); len(rec.Restarts) != 2 {
		t.Fatalf("%d restarts noted, want 2", len(rec.Restarts))
	}
	crash("third panic")
	v := h.kept("vm", api.StateCrashed)
	if !strings.Contains(v.LastReason, "stopped restarting after 3 restarts") {
		t.Fatalf("last reason %q", v.LastReason)
	}
	if strings.Join(v.LastConsole, "|") == "" || v.LastConsole[len(v.LastConsole)-1] != "third panic" {
		t.Fatalf("last console %q", v.LastConsole)
	}
	if n := len(h.eng.Starts()); n != 3 {
		t.Fatalf("%d starts, want 3", n)
	}
	if _, err := h.m.Start(context.Background(), "vm", false); err != nil {
		t.Fatal(err)
	}
	h.running("vm", 4)
	if rec, _ := h.record("vm"); len(rec.Restarts) != 0 || len(rec.LastConsole) != 0 {
		t.Fatalf("a start kept the brake's count: %+v", rec)
	}
}

// An admin's reboot (the power button, then on_reboot) and destroys do
// not count towards the brake.
func TestFakeAdminRebootsDoNotBrake(t *testing.T) {
	h := newFakeHost(t, func(o *Options) { o.RestartLimit = 2 })
	h.create(h.spec("vm", api.ActionDestroy, api.ActionRestart, api.ActionDestroy))
	for gen := 1; gen <= 3; gen++ {
		h.running("vm", gen)
		if err := h.m.Reboot(context.Background(), "vm", api.ShutdownRequest{Wait: true, TimeoutSec: 5}); err != nil {
			t.Fatalf("reboot %d: %v", gen, err)
		}
	}
	h.running("vm", 4)
	if rec, _ := h.record("vm"); len(rec.Restarts) != 0 {
		t.Fatalf("admin reboots counted: %v", rec.Restarts)
	}
}

// print makes the guest print a line and waits until the console has it.
func (h *fakeHost) print(name string, i *fake.Instance, line string) {
	h.t.Helper()
	d, _ := h.m.get(name)
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(5 * time.Millisecond) {
		if !i.Connected() {
			continue
		}
		i.Print(line + "\r\n")
		for j := 0; j < 100; j++ {
			if strings.Contains(string(d.con.Load().History()), line) {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	h.t.Fatalf("the console of %s never showed %q", name, line)
}

// Shutdown waits for the guest; with Force a guest that ignores the power
// button is destroyed.
func TestFakeShutdown(t *testing.T) {
	h := newFakeHost(t, nil)
	h.create(h.spec("a", api.ActionPreserve, api.ActionRestart, api.ActionDestroy))
	if err := h.m.Shutdown(context.Background(), "a", api.ShutdownRequest{Wait: true, TimeoutSec: 5}); err != nil {
		t.Fatal(err)
	}
	if v := h.kept("a", api.StateShutdown); v.LastReason != "poweroff: guest-shutdown" {
		t.Fatalf("last reason %q", v.LastReason)
	}

	h.create(h.spec("b", api.ActionPreserve, api.ActionRestart, api.ActionDestroy))
	h.vm("b").IgnorePowerdown(true)
	err := h.m.Shutdown(context.Background(), "b", api.ShutdownRequest{Wait: true, TimeoutSec: 1})
	if err == nil {
		t.Fatal("a guest that ignores the button was reported shut down")
	}
	h.running("b", 1)
	if err := h.m.Shutdown(context.Background(), "b", api.ShutdownRequest{Force: true, TimeoutSec: 1}); err != nil {
		t.Fatal(err)
	}
	h.gone("b")
}

// Pause and unpause move the VM and the stored state together; a pause
// the VM refuses changes nothing.
func TestFakePauseUnpause(t *testing.T) {
	h := newFakeHost(t, nil)
	h.create(h.spec("vm", "", "", ""))
	ctx := context.Background()
	if err := h.m.Pause(ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	if rec, _ := h.record("vm"); rec.State != api.StatePaused || h.get("vm").State != api.StatePaused {
		t.Fatalf("paused: stored %s", rec.State)
	}
	if err := h.m.Unpause(ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	h.running("vm", 1)
	h.vm("vm").Fail(fake.OpPause, errBoom)
	if err := h.m.Pause(ctx, "vm"); err == nil {
		t.Fatal("a failed pause succeeded")
	}
	h.running("vm", 1)
}
