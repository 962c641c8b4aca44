// Package enginetest is the conformance suite of the engine boundary: the
// contract internal/engine documents, asserted the same way against every
// implementation (the QEMU engine, when root and QEMU are there; the fake
// engine always). The domain manager relies on exactly these promises.
package enginetest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/engine"
)

// Setup is one engine under test and how to drive it.
type Setup struct {
	Engine engine.Engine
	// Spec returns a LaunchSpec for a small VM of its own (its RunDir a
	// fresh directory), without disks or NICs unless the engine needs one.
	Spec func(t *testing.T) engine.LaunchSpec
	// ErrGone is the error Attach returns for a VM that has ended (nil:
	// any error will do).
	ErrGone error
	// Forget drops an instance's handle without ending its VM, as a daemon
	// that exits leaves its VMs; nil when the engine needs nothing done
	// for a second handle (Attach) to work.
	Forget func(engine.Instance)
	// Powerdown says the guest answers the ACPI power button (once it has
	// booted: the suite presses it until the VM ends, at most ExitTimeout).
	Powerdown bool
	// Migrate says to test engine.Migratable (when implemented) with a
	// stream through a file.
	Migrate bool
	// ExitTimeout is how long an exit may take to be reported (0: 10s);
	// with Powerdown it must cover the guest's boot.
	ExitTimeout time.Duration
}

func (s Setup) exitTimeout() time.Duration {
	if s.ExitTimeout > 0 {
		return s.ExitTimeout
	}
	return 10 * time.Second
}

// Run runs the suite. setup is called once per subtest, which starts its
// own VMs (one at a time) and leaves none behind.
func Run(t *testing.T, setup func(t *testing.T) Setup) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Setup)
	}{
		{"ArgvAndBadSpec", testArgv},
		{"StartIsPrelaunch", testPrelaunch},
		{"ResumePause", testResumePause},
		{"ResetIsReboot", testReset},
		{"Powerdown", testPowerdown},
		{"KillIdempotentOneExit", testKill},
		{"Attach", testAttach},
		{"Balloon", testBalloon},
		{"Overhead", testOverhead},
		{"VNC", testVNC},
		{"Migrate", testMigrate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, setup(t)) })
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// start starts a VM from spec; it is killed (and its exit awaited) when
// the test ends.
func start(t *testing.T, s Setup, spec engine.LaunchSpec) engine.Instance {
	t.Helper()
	inst, err := s.Engine.Start(ctxFor(t), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if inst == nil {
		t.Fatal("Start returned no instance and no error")
	}
	t.Cleanup(func() {
		inst.Kill()
		select {
		case <-inst.Wait():
		case <-time.After(s.exitTimeout()):
			t.Errorf("the VM (pid %d) did not end after Kill", inst.PID())
		}
	})
	return inst
}

// wantStatus asserts the instance's run state.
func wantStatus(t *testing.T, inst engine.Instance, want engine.RunState) {
	t.Helper()
	got, err := inst.Status(ctxFor(t))
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if got != want {
		t.Fatalf("Status = %s, want %s", got, want)
	}
}

// waitExit returns the one Exit the instance delivers, within d.
func waitExit(t *testing.T, inst engine.Instance, d time.Duration) engine.Exit {
	t.Helper()
	select {
	case ex, ok := <-inst.Wait():
		if !ok {
			t.Fatal("Wait was closed without an Exit")
		}
		return ex
	case <-time.After(d):
		t.Fatalf("no Exit within %s", d)
	}
	return engine.Exit{}
}

// noSecondExit asserts Wait delivers nothing after its one Exit (closed
// or silent both keep the promise).
func noSecondExit(t *testing.T, inst engine.Instance) {
	t.Helper()
	select {
	case ex, ok := <-inst.Wait():
		if ok {
			t.Fatalf("Wait delivered a second Exit: %+v", ex)
		}
	case <-time.After(100 * time.Millisecond):
	}
}

func testArgv(t *testing.T, s Setup) {
	spec := s.Spec(t)
	argv, err := s.Engine.Argv(spec)
	if err != nil || len(argv) == 0 {
		t.Fatalf("Argv of a good spec: %q, %v", argv, err)
	}
	bad := spec
	bad.MemoryMiB = 0
	if _, err := s.Engine.Argv(bad); err == nil {
		t.Error("Argv accepted a spec with no memory")
	}
	inst, err := s.Engine.Start(ctxFor(t), bad)
	if err == nil {
		inst.Kill()
		t.Fatal("Start accepted a spec with no memory")
	}
	if inst != nil {
		t.Error("a failed Start returned an instance")
	}
}

func testPrelaunch(t *testing.T, s Setup) {
	inst := start(t, s, s.Spec(t))
	wantStatus(t, inst, engine.RunPrelaunch)
	if inst.PID() <= 0 {
		t.Errorf("PID = %d", inst.PID())
	}
	if n := len(inst.VCPUThreads()); n != 0 && n != s.Spec(t).VCPUs {
		t.Errorf("%d vCPU threads for %d vCPUs (none, when the engine has no host threads, or one each)", n, s.Spec(t).VCPUs)
	}
	if !json.Valid(inst.State()) {
		t.Errorf("State is not JSON: %q", inst.State())
	}
	// The console attaches between Start and Resume: the serial port is
	// there already.
	c, err := net.Dial("unix", inst.SerialPath())
	if err != nil {
		t.Fatalf("serial port %q: %v", inst.SerialPath(), err)
	}
	c.Close()
	select {
	case ex := <-inst.Wait():
		t.Fatalf("a VM that was only started ended: %+v", ex)
	default:
	}
}

func testResumePause(t *testing.T, s Setup) {
	ctx := ctxFor(t)
	inst := start(t, s, s.Spec(t))
	if err := inst.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, inst, engine.RunRunning)
	if err := inst.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, inst, engine.RunPaused)
	if err := inst.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, inst, engine.RunRunning)
	if _, err := inst.BlockStats(ctx); err != nil {
		t.Errorf("BlockStats: %v", err)
	}
}

func testReset(t *testing.T, s Setup) {
	ctx := ctxFor(t)
	inst := start(t, s, s.Spec(t))
	if err := inst.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := inst.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if ex := waitExit(t, inst, s.exitTimeout()); ex.Reason != engine.ExitReboot {
		t.Fatalf("Reset: exit %+v, want reason %q", ex, engine.ExitReboot)
	}
	noSecondExit(t, inst)
}

func testPowerdown(t *testing.T, s Setup) {
	if !s.Powerdown {
		t.Skip("this setup's guest does not answer the power button")
	}
	ctx := ctxFor(t)
	inst := start(t, s, s.Spec(t))
	if err := inst.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	// A press before the guest listens is lost: press until it goes.
	deadline := time.After(s.exitTimeout())
	for {
		if err := inst.Powerdown(ctx); err != nil {
			t.Fatalf("Powerdown: %v", err)
		}
		select {
		case ex, ok := <-inst.Wait():
			if !ok || ex.Reason != engine.ExitPoweroff {
				t.Fatalf("Powerdown: exit %+v (delivered %v), want reason %q", ex, ok, engine.ExitPoweroff)
			}
			noSecondExit(t, inst)
			return
		case <-time.After(time.Second):
		case <-deadline:
			t.Fatalf("the guest did not power off within %s", s.exitTimeout())
		}
	}
}

func testKill(t *testing.T, s Setup) {
	ctx := ctxFor(t)
	inst := start(t, s, s.Spec(t))
	if err := inst.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := inst.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := inst.Kill(); err != nil {
		t.Fatalf("a second Kill: %v", err)
	}
	if ex := waitExit(t, inst, s.exitTimeout()); ex.Reason != engine.ExitHost {
		t.Fatalf("Kill: exit %+v, want reason %q", ex, engine.ExitHost)
	}
	if err := inst.Kill(); err != nil {
		t.Fatalf("Kill after the exit: %v", err)
	}
	noSecondExit(t, inst)
	// Gone: it cannot be re-found.
	if inst2, err := s.Engine.Attach(ctx, inst.State()); err == nil {
		inst2.Kill()
		t.Fatal("Attach found a VM that was killed")
	} else if s.ErrGone != nil && !errors.Is(err, s.ErrGone) {
		t.Fatalf("Attach of a killed VM: %v, want %v", err, s.ErrGone)
	}
}

func testAttach(t *testing.T, s Setup) {
	ctx := ctxFor(t)
	first := start(t, s, s.Spec(t))
	if err := first.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	state := first.State()
	if s.Forget != nil {
		s.Forget(first)
	}
	inst, err := s.Engine.Attach(ctx, state)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	t.Cleanup(func() { inst.Kill() })
	if inst.PID() != first.PID() {
		t.Errorf("re-found pid %d, started %d", inst.PID(), first.PID())
	}
	if inst.SerialPath() != first.SerialPath() {
		t.Errorf("re-found serial %q, started %q", inst.SerialPath(), first.SerialPath())
	}
	wantStatus(t, inst, engine.RunRunning)
	if err := inst.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, inst, engine.RunPaused)
	if err := inst.Kill(); err != nil {
		t.Fatal(err)
	}
	waitExit(t, inst, s.exitTimeout())
	noSecondExit(t, inst)
}

func testBalloon(t *testing.T, s Setup) {
	spec := s.Spec(t)
	if !spec.Balloon {
		t.Skip("the spec has no balloon")
	}
	inst := start(t, s, spec)
	got, err := inst.Balloon(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(spec.MemoryMiB) << 20; got != want {
		t.Fatalf("Balloon before any target = %d, want the RAM size %d", got, want)
	}
	if err := inst.SetBalloon(ctxFor(t), got/2); err != nil {
		t.Fatalf("SetBalloon: %v", err)
	}
}

func testOverhead(t *testing.T, s Setup) {
	oe, ok := s.Engine.(engine.OverheadEstimator)
	if !ok {
		t.Skip("not an engine.OverheadEstimator")
	}
	spec := s.Spec(t)
	if n := oe.OverheadMiB(spec); n <= 0 {
		t.Errorf("OverheadMiB = %d", n)
	}
	if oe.OverheadModel(spec.Accel) == "" {
		t.Error("OverheadModel is empty")
	}
}

// testVNC: a VM with a VNC display serves it on its unix socket (RFB's
// version line first), takes its password before it runs, and still
// runs afterwards.
func testVNC(t *testing.T, s Setup) {
	spec := s.Spec(t)
	spec.VNC, spec.VNCPassword = true, true
	inst := start(t, s, spec)
	vd, ok := inst.(engine.VNCDisplay)
	if !ok {
		t.Skip("not an engine.VNCDisplay")
	}
	if err := vd.SetVNCPassword(ctxFor(t), "s3cret"); err != nil {
		t.Fatalf("SetVNCPassword: %v", err)
	}
	if err := inst.Resume(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", vd.VNCPath())
	if err != nil {
		t.Fatalf("VNC socket %q: %v", vd.VNCPath(), err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	greeting := make([]byte, 12)
	if _, err := io.ReadFull(c, greeting); err != nil || string(greeting) != "RFB 003.008\n" {
		t.Fatalf("VNC greeting %q, %v; want RFB 003.008", greeting, err)
	}
	wantStatus(t, inst, engine.RunRunning)
}

func testMigrate(t *testing.T, s Setup) {
	if !s.Migrate {
		t.Skip("this setup does not test migration")
	}
	ctx := ctxFor(t)
	src := start(t, s, s.Spec(t))
	mig, ok := src.(engine.Migratable)
	if !ok {
		t.Skip("not an engine.Migratable")
	}
	if err := src.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := mig.MigrateTo(ctx, f, engine.MigrateOptions{}); err != nil {
		t.Fatalf("MigrateTo: %v", err)
	}
	wantStatus(t, src, engine.RunHandedOver)
	src.Kill()
	waitExit(t, src, s.exitTimeout())

	spec := s.Spec(t)
	spec.Incoming = true
	dst := start(t, s, spec)
	wantStatus(t, dst, engine.RunIncoming)
	r, err := os.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	listening := false
	if err := dst.(engine.Migratable).MigrateFrom(ctx, r, engine.IncomingOptions{Listening: func() { listening = true }}); err != nil {
		t.Fatalf("MigrateFrom: %v", err)
	}
	if !listening {
		t.Error("MigrateFrom never called Listening")
	}
	wantStatus(t, dst, engine.RunPaused)
	if err := dst.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, dst, engine.RunRunning)
}
