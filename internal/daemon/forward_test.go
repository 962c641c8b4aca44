package daemon

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

// TestForwardable: verbs on a domain are forwarded to its host, its
// streams relayed; everything that is not a domain's stays where it is
// asked.
func TestForwardable(t *testing.T) {
	for path, want := range map[string][2]bool{
		"/domains/{name}/start":          {true, false},
		"/domains/{name}":                {true, false},
		"/definitions/{name}":            {true, false},
		"/domains/{name}/console":        {true, true},
		"/domains/{name}/vnc":            {true, true},
		"/domains/{name}/export/archive": {true, true},
		"/domains/{name}/save/image":     {true, true},
		"/domains/{name}/save/confirm":   {true, false},
		"/logs/{name}":                   {false, false},
		"/pools/{pool}":                  {false, false},
	} {
		if got := [2]bool{forwardable(path), relayed(path)}; got != want {
			t.Errorf("forwardable, relayed(%s) = %v, want %v", path, got, want)
		}
	}
}

// TestRefusedForRoom: only a ledger's refusal (a 507, or an operation
// that ended insufficient) passes a create on to the next host.
func TestRefusedForRoom(t *testing.T) {
	body := func(v any) []byte { b, _ := json.Marshal(v); return b }
	for _, tc := range []struct {
		what string
		out  api.ForwardReply
		want bool
	}{
		{"507", api.ForwardReply{Status: http.StatusInsufficientStorage, Body: body(api.ErrorBody{Error: "memory: no room", Class: "insufficient"})}, true},
		{"op ended insufficient", api.ForwardReply{Status: http.StatusAccepted, Body: body(api.Operation{ID: "1", Status: api.OpFailure, Error: "vcpus: 0 free", Class: "insufficient"})}, true},
		{"op succeeded", api.ForwardReply{Status: http.StatusAccepted, Body: body(api.Operation{ID: "1", Status: api.OpSuccess})}, false},
		{"op failed otherwise", api.ForwardReply{Status: http.StatusAccepted, Body: body(api.Operation{ID: "1", Status: api.OpFailure, Error: "bad kernel", Class: "invalid"})}, false},
		{"400", api.ForwardReply{Status: http.StatusBadRequest, Body: body(api.ErrorBody{Error: "bad", Class: "invalid"})}, false},
	} {
		err := refusedForRoom(tc.out)
		if (err != nil) != tc.want || err != nil && !errors.Is(err, api.ErrInsufficient) {
			t.Errorf("%s: %v, want refused=%v", tc.what, err, tc.want)
		}
	}
}
