package domain

import (
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

func TestTransitions(t *testing.T) {
	for _, c := range []struct {
		from, to api.State
		ok       bool
	}{
		{"", api.StateRunning, true},
		{api.StateRunning, api.StatePaused, true},
		{api.StatePaused, api.StateRunning, true},
		{api.StateRunning, api.StateDying, true},
		{api.StateDying, api.StateShutdown, true},
		{api.StateShutdown, api.StateRunning, true}, // start of a defined domain
		{"", api.StateDying, false},                 // nothing runs to be destroyed
		{api.StateShutdown, api.StateDying, true},   // a kept domain removed
		{api.StateDying, api.StateDying, false},     // removed twice
		{api.StateRunning, api.StateBlocked, false}, // shown, never stored
		{api.StateRunning, "", false},
	} {
		if got := canMove(c.from, c.to); got != c.ok {
			t.Errorf("%q -> %q: %v, want %v", c.from, c.to, got, c.ok)
		}
	}
	for from, tos := range transitions {
		for _, to := range tos {
			if to == api.StateBlocked || to == "" {
				t.Errorf("%q -> %q: a state that is never stored", from, to)
			}
		}
	}
}
