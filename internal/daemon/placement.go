package daemon

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/cluster"
)

// placeCreate sends a create to the host of the cluster that placement
// chooses (the most room in its ledger, QEMU overhead included) or that
// --host names, when that is another host; it reports whether it
// answered. Each host's own ledger still admits or refuses: a host that
// refuses is passed over for the next, and when none takes it the
// refusal names every host's free figures.
func (s *Server) placeCreate(w http.ResponseWriter, r *http.Request, req api.CreateRequest, dry any) bool {
	if r.Context().Value(forwardedKey{}) != nil || req.DryRun {
		return false
	}
	if !s.cluster.In() {
		if req.Host != "" {
			reply(w, nil, api.Errorf(api.ErrInvalid, "--host %q: this host is in no cluster; create it here without --host", req.Host))
			return true
		}
		return false
	}
	me := s.trust.Status().Name
	if req.Host != "" {
		if _, err := s.imageHosts(r.Context(), req, req.Host, []string{req.Host}); err != nil {
			reply(w, nil, err)
			return true
		}
	}
	if req.Host == me && !s.cluster.Witness() {
		return false
	}
	p := principalOf(r.Context())
	if !forwardRoles[p.Role] {
		return false // a tenant's domains stay on the host it calls
	}
	d, _ := dry.(api.DryRun)
	need := cluster.Need{Name: req.Spec.Name, MemMiB: d.Spec.MaxMemMiB + d.OverheadMiB, VCPUs: d.Spec.MaxVCPUs}
	hosts, err := s.candidates(r, need, req.Host)
	if err == nil {
		hosts, err = s.imageHosts(r.Context(), req, req.Host, hosts)
	}
	if err != nil {
		reply(w, nil, err)
		return true
	}
	req.Host = ""
	body, _ := json.Marshal(req)
	path := "/domains"
	if q := r.URL.RawQuery; q != "" {
		path += "?" + q
	}
	var refusals []string
	for _, h := range hosts {
		if h == me {
			return false // this host's own create: its ledger decides
		}
		out, err := s.forwardTo(r.Context(), h, api.ForwardCall{Method: "POST", Path: path, Body: body, Role: string(p.Role), Caller: p.String()})
		if err == nil {
			err = refusedForRoom(out)
		}
		if err == nil {
			s.relay(w, r, out)
			return true
		}
		refusals = append(refusals, h+": "+err.Error())
	}
	reply(w, nil, api.Errorf(api.ErrInsufficient, "no host took %s: %s", req.Spec.Name, strings.Join(refusals, "; ")))
	return true
}

// candidates are the hosts to ask, in order: the one --host names (which
// must be a live host of the cluster), or placement's.
func (s *Server) candidates(r *http.Request, need cluster.Need, pin string) ([]string, error) {
	rooms, err := s.cluster.Rooms(r.Context())
	if err != nil {
		return nil, err
	}
	if pin == "" {
		return cluster.Place(need, rooms)
	}
	var names []string
	for _, rm := range rooms {
		names = append(names, rm.Host)
		if rm.Host == pin && !rm.Alive {
			return nil, api.Errorf(api.ErrUnavailable, "--host %q is down (its lease ran out): nothing created", pin)
		}
		if rm.Host == pin && rm.Witness {
			return nil, api.Errorf(api.ErrInvalid, "--host %q is the cluster's witness, an etcd member only: it runs no domains", pin)
		}
		if rm.Host == pin {
			return []string{pin}, nil
		}
	}
	return nil, api.Errorf(api.ErrNotFound, "--host %q is not a host of this cluster (its hosts: %s)", pin, strings.Join(names, ", "))
}

// refusedForRoom is a forwarded create's refusal by the host's ledger
// (the next host is asked), nil for any other answer.
func refusedForRoom(out api.ForwardReply) error {
	var op api.Operation
	var eb api.ErrorBody
	switch {
	case out.Status == http.StatusInsufficientStorage && json.Unmarshal(out.Body, &eb) == nil:
		return api.Errorf(api.ErrInsufficient, "%s", eb.Error)
	case out.Status == http.StatusAccepted && json.Unmarshal(out.Body, &op) == nil && errors.Is(op.Err(), api.ErrInsufficient):
		return op.Err()
	}
	return nil
}
