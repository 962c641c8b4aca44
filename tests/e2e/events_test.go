package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ringfence/ringfence/internal/api"
)

// The event stream: a domain's life arrives in order, with increasing
// seqs and who asked; a reader resuming with since= gets exactly what it
// missed; since beyond the newest event is one clear 400.
func TestEventStream(t *testing.T) {
	e := NewEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan api.Event, 1000)
	go e.Client.Events(ctx, 0, func(ev api.Event) error { got <- ev; return nil })

	e.MustRF("create", e.WriteConfig("ev1", ""))
	e.MustRF("pause", "ev1")
	e.MustRF("unpause", "ev1")
	e.MustRF("destroy", "ev1")

	var life []api.Event
	var last uint64
	deadline := time.After(30 * time.Second)
	for len(life) < 4 {
		select {
		case ev := <-got:
			if ev.Seq <= last {
				t.Fatalf("seq %d after %d: not increasing", ev.Seq, last)
			}
			last = ev.Seq
			if ev.Type == api.EventLifecycle && ev.Domain == "ev1" {
				life = append(life, ev)
			}
		case <-deadline:
			t.Fatalf("events so far: %+v\ndaemon log:\n%s", life, e.DaemonLog())
		}
	}
	for i, want := range []string{api.EvCreated, api.EvPaused, api.EvUnpaused, api.EvDestroyed} {
		ev := life[i]
		if ev.Action != want || ev.Actor == nil || ev.Actor.Name != "root" || ev.Actor.Kind != "local" || ev.Actor.Remote == "" {
			t.Errorf("event %d: %+v (actor %+v), want %s by root on the socket", i, ev, ev.Actor, want)
		}
	}

	// A reader that left after "paused" resumes with exactly the rest.
	since := strconv.FormatUint(life[1].Seq, 10)
	out := e.MustRF("events", "--since", since, "--count", "2", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("events --since %s --count 2:\n%s", since, out)
	}
	for i, l := range lines {
		var ev api.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Seq != life[i+2].Seq || ev.Action != life[i+2].Action {
			t.Errorf("resumed event %d: %+v, want %+v", i, ev, life[i+2])
		}
	}
	// The table fits 80 columns.
	for _, l := range strings.Split(strings.TrimSpace(e.MustRF("events", "--since", "0", "--count", "5")), "\n") {
		if utf8.RuneCountInString(l) > 80 {
			t.Errorf("line over 80 columns: %q", l)
		}
	}

	// since beyond the head: a 400 with a reason, from the CLI and on the wire.
	r := e.RF("events", "--since", "99999999")
	if r.Code == 0 || !strings.Contains(r.Stderr, "beyond") {
		t.Fatalf("events --since 99999999: exit %d, %s", r.Code, r.Stderr)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", e.Socket)
	}}}
	resp, err := hc.Get("http://ringfence" + api.Version + "/events?since=99999999")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("since beyond the head: HTTP %d, want 400", resp.StatusCode)
	}
}
