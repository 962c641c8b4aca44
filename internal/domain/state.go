package domain

import "github.com/ringfence/ringfence/internal/api"

// A domain's stored state moves only along these edges; "" is a domain
// that has not run yet (defined, or a create in progress); dying is a
// domain being removed (whatever it was). Blocked is shown, never stored
// (it is running with no vCPU on a CPU right now).
var transitions = map[api.State][]api.State{
	"":                {api.StateRunning, api.StatePaused, api.StateShutdown, api.StateCrashed},
	api.StateRunning:  {api.StatePaused, api.StateDying, api.StateShutdown, api.StateCrashed, api.StateRunning},
	api.StatePaused:   {api.StateRunning, api.StateDying, api.StateShutdown, api.StateCrashed, api.StatePaused},
	api.StateDying:    {api.StateShutdown, api.StateCrashed, api.StateRunning, api.StatePaused},
	api.StateShutdown: {api.StateRunning, api.StatePaused, api.StateShutdown, api.StateCrashed, api.StateDying},
	api.StateCrashed:  {api.StateRunning, api.StatePaused, api.StateShutdown, api.StateCrashed, api.StateDying},
}

// canMove reports whether a domain may go from one state to another.
func canMove(from, to api.State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// setState moves d to a state. An edge outside the table is a bug in
// the manager: it is still carried out (the host's truth wins over the
// table) but said loudly, so it is found. Caller holds d.mu.
func (m *Manager) setState(d *dom, to api.State) {
	if from := d.rec.State; !canMove(from, to) {
		m.o.Log.Error("a domain moved along an edge the state machine does not have (a bug)", "name", d.rec.Spec.Name, "from", from, "to", to)
	}
	d.rec.State = to
}
