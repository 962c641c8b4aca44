package domain

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine/fake"
)

// TestFakeXlVerbChecks: what vcpu-set, sysrq, trigger and dump-core
// refuse before they reach the engine, with the class the exit code and
// HTTP status come from; trigger reset and power act as reset and
// shutdown do.
func TestFakeXlVerbChecks(t *testing.T) {
	ctx := context.Background()
	h := newFakeHost(t, nil)
	s := h.spec("vm", "", api.ActionDestroy, "")
	s.MaxVCPUs = 2
	h.create(s)
	for _, tc := range []struct {
		what  string
		err   error
		class error
		want  string
	}{
		{"vcpu-set 0", h.m.VCPUSet(ctx, "vm", 0), api.ErrInvalid, "between 1 and maxvcpus (2)"},
		{"vcpu-set 3", h.m.VCPUSet(ctx, "vm", 3), api.ErrInvalid, "maxvcpus is fixed at boot"},
		{"vcpu-set 2", h.m.VCPUSet(ctx, "vm", 2), api.ErrUnavailable, "cannot hot-plug"},
		{"vcpu-set gone", h.m.VCPUSet(ctx, "nosuch", 1), api.ErrNotFound, "no domain named"},
		{"sysrq hh", h.m.SysRq(ctx, "vm", "hh"), api.ErrInvalid, "one lowercase letter or digit"},
		{"sysrq H", h.m.SysRq(ctx, "vm", "H"), api.ErrInvalid, "one lowercase letter or digit"},
		{"trigger sleep", h.m.Trigger(ctx, "vm", api.TriggerSleep), api.ErrInvalid, "no ACPI sleep button"},
		{"trigger init", h.m.Trigger(ctx, "vm", api.TriggerInit), api.ErrInvalid, "cannot inject an INIT"},
		{"trigger bogus", h.m.Trigger(ctx, "vm", "bogus"), api.ErrInvalid, "one of nmi, reset, power, s3resume"},
		{"trigger nmi", h.m.Trigger(ctx, "vm", api.TriggerNMI), api.ErrUnavailable, "cannot send keys"},
		{"dump-core relative", errOf(h.m.DumpCore(ctx, "vm", "core", nil)), api.ErrInvalid, "absolute path"},
		{"dump-core engine", errOf(h.m.DumpCore(ctx, "vm", t.TempDir()+"/core", nil)), api.ErrUnavailable, "cannot dump"},
	} {
		if !errors.Is(tc.err, tc.class) || tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v, want %v with %q", tc.what, tc.err, tc.class, tc.want)
		}
	}
	h.end("vm", func(*fake.Instance) {
		if err := h.m.Trigger(ctx, "vm", api.TriggerPower); err != nil {
			t.Fatalf("trigger power: %v", err)
		}
	})
	h.gone("vm") // the power button: powered off, on_poweroff destroy
}

func errOf(_ api.DumpCoreResult, err error) error { return err }
