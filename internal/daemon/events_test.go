package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/events"
)

// eventServer serves the API as role p over a real listener.
func eventServer(t *testing.T, p auth.Principal) (*Server, *httptest.Server) {
	s := &Server{bus: events.New(events.Config{MaxLag: 50})}
	hs := httptest.NewUnstartedServer(s.handler([]auth.Role{p.Role}, nil))
	hs.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context { return withPrincipal(ctx, p) }
	hs.Start()
	t.Cleanup(hs.Close)
	return s, hs
}

func readEvent(t *testing.T, sc *bufio.Scanner) api.Event {
	t.Helper()
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var ev api.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	t.Fatalf("stream ended: %v", sc.Err())
	return api.Event{}
}

func TestEventsNDJSON(t *testing.T) {
	s, hs := eventServer(t, as(auth.TenantUser))
	s.bus.Publish(api.Event{Type: api.EventLifecycle, Domain: "theirs", Tenant: "other"})
	s.bus.Publish(api.Event{Type: api.EventLifecycle, Domain: "ours", Tenant: "acme"})
	resp, err := http.Get(hs.URL + api.Version + "/events?since=0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	if ev := readEvent(t, sc); ev.Domain != "ours" || ev.Seq != 2 {
		t.Fatalf("a tenant saw %+v", ev)
	}
	s.bus.Publish(api.Event{Type: api.EventLifecycle, Domain: "ours2", Tenant: "acme"})
	if ev := readEvent(t, sc); ev.Domain != "ours2" || ev.Seq != 3 {
		t.Fatalf("live: %+v", ev)
	}
	for _, q := range []string{"?since=4", "?since=x", "?since=-1"} {
		r, err := http.Get(hs.URL + api.Version + "/events" + q)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, r.StatusCode)
		}
	}
}

// A reader that stops reading is told it lagged once it reads again.
func TestEventsLagged(t *testing.T) {
	s, hs := eventServer(t, as(auth.Admin))
	resp, err := http.Get(hs.URL + api.Version + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for range 100 {
		s.bus.Publish(api.Event{Type: api.EventHost, Detail: "x"})
	}
	sc := bufio.NewScanner(resp.Body)
	var last api.Event
	for sc.Scan() {
		if len(sc.Bytes()) > 0 {
			json.Unmarshal(sc.Bytes(), &last)
		}
	}
	if last.Type != api.EventLagged {
		t.Fatalf("last event %+v, want lagged", last)
	}
}

func TestEventsWebSocket(t *testing.T) {
	s, hs := eventServer(t, as(auth.Admin))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, hs.URL+api.Version+"/events?since=0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	s.bus.Publish(api.Event{Type: api.EventLifecycle, Action: api.EvStarted, Domain: "g1"})
	_, data, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ev api.Event
	if json.Unmarshal(data, &ev); ev.Seq != 1 || ev.Domain != "g1" {
		t.Fatalf("got %s", data)
	}
}
