package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/cluster"
	"github.com/ringfence/ringfence/internal/domain"
)

// defaultParallel is how many domains an evacuation migrates at once.
const defaultParallel = 2

// evacuate is `host evacuate HOST`: run on HOST itself (forwarded there
// from any other host), as an operation.
func (s *Server) evacuate(w http.ResponseWriter, r *http.Request) {
	var req api.EvacuateRequest
	if err := decode(r, &req); err != nil {
		reply(w, nil, err)
		return
	}
	host := r.PathValue("peer")
	if !s.cluster.In() {
		reply(w, nil, api.Errorf(api.ErrInvalid, "this host is in no cluster: there is no other host to evacuate to"))
		return
	}
	if host != s.cluster.Name() {
		s.forwardHostVerb(w, r, host, req)
		return
	}
	if req.Parallel <= 0 {
		req.Parallel = defaultParallel
	}
	ev := &evacuation{s: s, me: host, limit: req.Parallel}
	if err := ev.check(r.Context()); err != nil {
		reply(w, nil, err)
		return
	}
	s.startOp(w, r, "evacuate", "", "", func(ctx context.Context, _ func(api.JobProgress)) (any, error) {
		return ev.run(ctx)
	})
}

// forwardHostVerb sends a verb on another host to it (POST under
// /cluster/hosts/HOST/), and relays its answer.
func (s *Server) forwardHostVerb(w http.ResponseWriter, r *http.Request, host string, req any) {
	if r.Context().Value(forwardedKey{}) != nil {
		reply(w, nil, api.Errorf(api.ErrConflict, "host %q: a forwarded call reached the wrong host", host))
		return
	}
	p := principalOf(r.Context())
	body, _ := json.Marshal(req)
	out, err := s.forwardTo(r.Context(), host, api.ForwardCall{Method: r.Method, Path: strings.TrimPrefix(r.URL.Path, api.Version), Body: body, Role: string(p.Role), Caller: p.String()})
	if err != nil {
		reply(w, nil, err)
		return
	}
	s.relay(w, r, out)
}

// evacuation empties this host: it is marked excluded (placement passes
// it over), then every running domain is live-migrated to the host with
// the most room, limit at a time. It stays excluded until `host resume`.
type evacuation struct {
	s     *Server
	me    string
	limit int
}

// check refuses to evacuate the last host that can run domains.
func (ev *evacuation) check(ctx context.Context) error {
	rooms, err := ev.s.cluster.Rooms(ctx)
	if err != nil {
		return err
	}
	for _, r := range rooms {
		if r.Host != ev.me && r.Alive && !r.Witness && !r.Excluded {
			return nil
		}
	}
	return api.Errorf(api.ErrConflict, "%s is the last host of the cluster that can run domains: there is nowhere to evacuate it to; nothing changed", ev.me)
}

func (ev *evacuation) run(ctx context.Context) (api.Evacuation, error) {
	out := api.Evacuation{Host: ev.me, Moved: []api.EvacuatedMove{}}
	if err := ev.s.cluster.SetExcluded(ctx, ev.me, true); err != nil {
		return out, err
	}
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	sem := make(chan struct{}, ev.limit)
	for _, d := range ev.s.mgr.List(false) {
		if d.PID == 0 {
			continue
		}
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			to, err := ev.move(ctx, name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, fmt.Sprintf("%s: %v", name, err))
				return
			}
			out.Moved = append(out.Moved, api.EvacuatedMove{Domain: name, To: to})
		}(d.Spec.Name)
	}
	wg.Wait()
	if len(failed) > 0 {
		return out, api.Errorf(api.ErrConflict, "%d moved, %d not: %s; %s stays excluded: fix that and evacuate again, or `ringfence host resume %s`",
			len(out.Moved), len(failed), strings.Join(failed, "; "), ev.me, ev.me)
	}
	ev.s.log.Info("cluster: host evacuated", "host", ev.me, "moved", len(out.Moved))
	return out, nil
}

// move live-migrates one domain to the first host placement gives that
// takes it (a host whose ledger refuses it is passed over).
func (ev *evacuation) move(ctx context.Context, name string) (string, error) {
	need := cluster.Need{Name: name}
	for _, e := range ev.s.ledger.Snapshot().Entries {
		if e.Domain == name {
			need.MemMiB, need.VCPUs = e.MemoryMiB+e.OverheadMiB, e.VCPUs
		}
	}
	rooms, err := ev.s.cluster.Rooms(ctx)
	if err != nil {
		return "", err
	}
	hosts, err := cluster.Place(need, rooms)
	if err != nil {
		return "", err
	}
	var refusals []string
	for _, h := range hosts {
		err := ev.migrateTo(ctx, name, h)
		if err == nil {
			return h, nil
		}
		if !errors.Is(err, api.ErrInsufficient) {
			return "", fmt.Errorf("to %s: %w", h, err)
		}
		refusals = append(refusals, h+": "+err.Error())
	}
	return "", api.Errorf(api.ErrInsufficient, "no host took it: %s", strings.Join(refusals, "; "))
}

func (ev *evacuation) migrateTo(ctx context.Context, name, host string) error {
	if u, ok := ev.s.mgr.Unstarted(ctx, name); ok {
		return ev.coldMoveTo(ctx, name, u, host)
	}
	addr, err := ev.s.cluster.PeerAddr(ctx, host)
	if err != nil {
		return err
	}
	mp, err := ev.s.dialPeer(ctx, name, addr)
	if err != nil {
		return err
	}
	defer mp.Control.Close()
	_, err = ev.s.mgr.MigrateOut(ctx, name, mp, domain.MigrateOptions{DowntimeMs: 30}, func(api.MigrationProgress) {})
	return err
}
