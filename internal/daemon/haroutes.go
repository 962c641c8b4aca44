package daemon

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/cluster"
)

// haRoutes: a domain's HA on or off, and the cluster's N+1 plan.
func (s *Server) haRoutes() []route {
	return []route{
		{"PUT", domainPath + "/ha", auth.DomainHA, handle(func(r *http.Request, req api.HARequest) (any, error) {
			name := r.PathValue("name")
			return s.mgr.SetHA(r.Context(), name, req.On, func(spec api.DomainSpec) error {
				return s.admitHA(r.Context(), spec, s.cluster.Name())
			})
		})},
		{"GET", "/cluster/plan", auth.HostRead, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.haPlan(r.Context(), nil)
			reply(w, out, err)
		}},
	}
}

// admitHA refuses an HA domain that could not be restarted elsewhere:
// outside a cluster, with a disk no other host reaches, or one that
// would break the N+1 plan if it ran on host.
func (s *Server) admitHA(ctx context.Context, spec api.DomainSpec, host string) error {
	if !s.cluster.In() {
		return api.Errorf(api.ErrInvalid, "%s: HA restarts a domain on another host of a cluster, and this host is in none (`ringfence cluster init` / `cluster join`); nothing changed", spec.Name)
	}
	if err := s.haStorage(ctx, spec); err != nil {
		return err
	}
	mem, cpus := s.mgr.NeedOf(spec)
	add := &cluster.HADomain{Host: host, Need: cluster.Need{Name: spec.Name, MemMiB: mem, VCPUs: cpus}}
	plan, err := s.haPlan(ctx, add)
	if err != nil {
		return err
	}
	for _, h := range plan.Hosts {
		if !h.OK {
			return api.Errorf(api.ErrInsufficient, "HA for %s (%d MiB with QEMU overhead, %d vCPUs, on %s) would break the cluster's N+1 plan: %s; free memory on the other hosts, add a host, or leave HA off; nothing changed (`ringfence cluster plan` shows the plan)",
				spec.Name, mem, cpus, host, h.Why)
		}
	}
	return nil
}

// haStorage checks that every disk is on a cluster pool: a survivor
// opens the same path.
func (s *Server) haStorage(ctx context.Context, spec api.DomainSpec) error {
	pools, err := s.pools.List(ctx)
	if err != nil {
		return err
	}
	for _, d := range spec.Disks {
		if d.Target == "" {
			continue // an empty CD-ROM drive
		}
		if !onClusterPool(d.Target, pools) {
			return api.Errorf(api.ErrInvalid, "%s: disk %s (%s) is not on a cluster pool: HA starts the domain on another host, which must open the same disk at the same path; put it in a pool made with `ringfence pool create NAME --dir DIR --cluster` (shared storage mounted at DIR on every host); nothing changed",
				spec.Name, d.VDev, d.Target)
		}
	}
	return nil
}

func onClusterPool(path string, pools []api.Pool) bool {
	for _, p := range pools {
		if !p.Cluster {
			continue
		}
		if rel, err := filepath.Rel(p.Dir, filepath.Clean(path)); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			return true
		}
	}
	return false
}

// haPlan is the N+1 plan of the cluster's running HA domains, with add
// counted on its host (and its free figures taken from that host).
func (s *Server) haPlan(ctx context.Context, add *cluster.HADomain) (api.HAPlan, error) {
	if !s.cluster.In() {
		return api.HAPlan{}, api.Errorf(api.ErrInvalid, "this host is in no cluster: there is no plan to make")
	}
	rooms, err := s.cluster.Rooms(ctx)
	if err != nil {
		return api.HAPlan{}, err
	}
	recs, err := s.cluster.Domains(ctx)
	if err != nil {
		return api.HAPlan{}, err
	}
	var doms []cluster.HADomain
	for _, r := range recs {
		d := r.Domain
		if !d.Spec.HA || d.PID == 0 && d.State != api.StateRunning && d.State != api.StateBlocked && d.State != api.StatePaused {
			continue
		}
		if add != nil && d.Spec.Name == add.Need.Name {
			continue
		}
		mem, cpus := s.mgr.NeedOf(d.Spec)
		doms = append(doms, cluster.HADomain{Host: r.Host, Need: cluster.Need{Name: d.Spec.Name, MemMiB: mem, VCPUs: cpus}})
	}
	if add != nil {
		doms = append(doms, *add)
	}
	return cluster.PlanHA(rooms, doms), nil
}

// createHA is a create's HA check: with ha = 1 the domain is admitted
// only if it could be restarted elsewhere (on the host --host names, or
// placement's first choice).
func (s *Server) createHA(ctx context.Context, req api.CreateRequest, dry any) error {
	d, ok := dry.(api.DryRun)
	if !ok || !d.Spec.HA {
		return nil
	}
	host := req.Host
	if host == "" && s.cluster.In() {
		host = s.cluster.Name()
		mem, cpus := s.mgr.NeedOf(d.Spec)
		if rooms, err := s.cluster.Rooms(ctx); err == nil && !s.cluster.Witness() {
			if order, err := cluster.Place(cluster.Need{Name: d.Spec.Name, MemMiB: mem, VCPUs: cpus}, rooms); err == nil {
				host = order[0]
			}
		}
	}
	return s.admitHA(ctx, d.Spec, host)
}
