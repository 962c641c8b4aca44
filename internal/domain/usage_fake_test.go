package domain

import (
	"context"
	"slices"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine/fake"
	"github.com/ringfence/ringfence/internal/usage"
)

// withUsage gives the fake host a usage ledger over its store.
func withUsage(t *testing.T) func(*Options) {
	return func(o *Options) {
		l := usage.New(o.Store)
		if err := l.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		o.Usage = l
	}
}

// usageReasons are name's records' reasons, checked to tile time.
func (h *fakeHost) usageReasons(name string) []string {
	h.t.Helper()
	recs, err := h.o.Usage.Records(context.Background(), usage.Filter{ToNs: 1 << 62, Domain: name})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for i, r := range recs {
		if i > 0 && r.StartNs != recs[i-1].EndNs {
			h.t.Fatalf("records of %s do not tile: %+v then %+v", name, recs[i-1], r)
		}
		reason := r.Reason
		if r.Open {
			reason = "open:" + string(r.Alloc.State)
		}
		out = append(out, reason)
	}
	return out
}

func TestUsageRecordsFollowTheDomain(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		act  func(h *fakeHost)
		want []string
	}{
		{"pause, unpause, mem-set, destroy", func(h *fakeHost) {
			for _, err := range []error{h.m.Pause(ctx, "vm"), h.m.Unpause(ctx, "vm"), h.m.MemSet(ctx, "vm", 96), h.m.Destroy(ctx, "vm")} {
				if err != nil {
					t.Fatal(err)
				}
			}
		}, []string{"state:running", "state:paused", "state:running", "mem", "state:shutdown", "destroyed"}},
		{"a crash restarts: the dead incarnation is not billed as running", func(h *fakeHost) {
			h.end("vm", (*fake.Instance).GuestPanic)
		}, []string{"state:running", "state:crashed", "state:starting", "state:running", "open:running"}},
		{"a daemon restart continues the open record", func(h *fakeHost) {
			h.daemonRestart()
		}, []string{"state:running", "open:running"}},
		{"a rename ends the old name's records", func(h *fakeHost) {
			if err := h.m.Rename(ctx, "vm", "vm2"); err != nil {
				t.Fatal(err)
			}
		}, []string{"state:running", "renamed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t, withUsage(t))
			s := h.spec("vm", api.ActionDestroy, api.ActionRestart, api.ActionRestart)
			s.MaxMemMiB = 128
			h.create(s)
			tc.act(h)
			if got := h.usageReasons("vm"); !slices.Equal(got, tc.want) {
				t.Fatalf("records %v, want %v", got, tc.want)
			}
		})
	}
}
