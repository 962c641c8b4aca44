package fake_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/engine/enginetest"
	"github.com/ringfence/ringfence/internal/engine/fake"
)

func spec(t *testing.T) engine.LaunchSpec {
	return engine.LaunchSpec{Name: "vm", Accel: "tcg", MemoryMiB: 64, VCPUs: 1, Balloon: true, RunDir: t.TempDir()}
}

func TestConformance(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) enginetest.Setup {
		return enginetest.Setup{Engine: fake.New(), Spec: spec, ErrGone: fake.ErrGone, Powerdown: true, Migrate: true, ExitTimeout: 2 * time.Second}
	})
}

// The knobs do what tests above the engine count on.
func TestKnobs(t *testing.T) {
	ctx := context.Background()
	e := fake.New()
	boom := errors.New("boom")
	e.FailStart(func(engine.LaunchSpec) error { return boom })
	if _, err := e.Start(ctx, spec(t)); !errors.Is(err, boom) {
		t.Fatalf("FailStart: %v", err)
	}
	e.FailStart(nil)
	var seen *fake.Instance
	e.OnStart(func(i *fake.Instance) { seen = i; i.Fail(fake.OpResume, boom) })
	inst, err := e.Start(ctx, spec(t))
	if err != nil {
		t.Fatal(err)
	}
	if seen == nil || seen.PID() != inst.PID() || len(e.Starts()) != 1 {
		t.Fatal("OnStart did not see the start")
	}
	if err := inst.Resume(ctx); !errors.Is(err, boom) {
		t.Fatalf("Fail(resume): %v", err)
	}
	seen.Fail(fake.OpResume, nil)
	if err := inst.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if e.Find("vm") == nil || len(e.Live()) != 1 {
		t.Fatal("the live VM is not found")
	}
	seen.IgnorePowerdown(true)
	inst.Powerdown(ctx)
	select {
	case ex := <-inst.Wait():
		t.Fatalf("a deaf guest powered off: %+v", ex)
	case <-time.After(50 * time.Millisecond):
	}
	seen.GuestPanic()
	if ex := <-inst.Wait(); ex.Reason != engine.ExitCrash || ex.Detail != "guest-panic" {
		t.Fatalf("GuestPanic: %+v", ex)
	}
	if len(e.Live()) != 0 || !seen.Ended() {
		t.Fatal("an ended VM is live")
	}
	if _, err := e.Start(ctx, engine.LaunchSpec{Name: "x", Accel: "tcg", MemoryMiB: 1, VCPUs: 1, RunDir: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Fatal("a run dir that does not exist was accepted")
	}
}
