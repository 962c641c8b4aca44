package domain

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/engine/fake"
)

type recorder struct {
	mu  sync.Mutex
	evs []api.Event
}

func (r *recorder) Publish(ev api.Event) { r.mu.Lock(); r.evs = append(r.evs, ev); r.mu.Unlock() }

func (r *recorder) actions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.evs {
		who := "guest"
		if ev.Actor != nil {
			who = ev.Actor.Name
		}
		out = append(out, ev.Action+" by "+who)
	}
	return out
}

// The verbs say what they did and who asked; the guest's own ends (a
// crash, a reboot) have no actor; a destroy is said once, by the verb.
func TestEventsEmitted(t *testing.T) {
	rec := &recorder{}
	h := newFakeHost(t, func(o *Options) { o.Events = rec })
	ctx := auth.NewContext(context.Background(), auth.Principal{Kind: auth.Token, Name: "alice", Role: auth.Operator, Remote: "192.0.2.1:5"})
	if _, err := h.m.Create(ctx, api.CreateRequest{Spec: h.spec("vm", api.ActionPreserve, api.ActionRestart, api.ActionPreserve)}); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{h.m.Pause(ctx, "vm"), h.m.Unpause(ctx, "vm"), h.m.MemSet(ctx, "vm", 32)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	h.end("vm", (*fake.Instance).GuestReboot)
	h.running("vm", 2)
	h.end("vm", (*fake.Instance).GuestPanic)
	if _, err := h.m.Start(ctx, "vm", false); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Shutdown(ctx, "vm", api.ShutdownRequest{Wait: true, TimeoutSec: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Start(ctx, "vm", false); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Destroy(ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Pause(ctx, "vm"); err == nil {
		t.Fatal("pause of a gone domain")
	}
	want := []string{"created by alice", "paused by alice", "unpaused by alice", "resized by alice",
		"rebooted by guest", "crashed by guest", "started by alice",
		"shutdown by alice", "started by alice", "destroyed by alice"}
	if got := rec.actions(); !slices.Equal(got, want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
	if a := rec.evs[0].Actor; a.Kind != "token" || a.Role != "operator" || a.Remote != "192.0.2.1:5" || rec.evs[0].Domain != "vm" {
		t.Fatalf("first event %+v actor %+v", rec.evs[0], a)
	}
}
