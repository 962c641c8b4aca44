package daemon

import (
	"net/http"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/events"
)

// eventRoutes: the event stream.
func (s *Server) eventRoutes() []route {
	return []route{
		{"GET", "/events", auth.EventsRead, s.events},
	}
}

// events streams the events the caller may see (events.Stream: NDJSON,
// or WebSocket messages on an upgrade; ?since=SEQ replays).
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if s.bus == nil {
		reply(w, nil, api.Errorf(api.ErrUnavailable, "this daemon publishes no events"))
		return
	}
	p := principalOf(r.Context())
	if err := events.Stream(w, r, s.bus, func(ev api.Event) bool { return p.Sees(ev.Tenant) }); err != nil {
		reply(w, nil, err)
	}
}
