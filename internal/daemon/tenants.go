package daemon

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/domain"
	"github.com/ringfence/ringfence/internal/netmgr"
	"github.com/ringfence/ringfence/internal/storage"
	"github.com/ringfence/ringfence/internal/tenants"
)

// Tenants on the API. Every object a path names (a domain by name, domid
// or UUID; a network; a pool; a tenant) is looked up before the route
// runs, and a tenant's principal that may not see it gets the answer of
// an object that does not exist: the same status, the same words
// (visible). Lists are filtered the same way. What a tenant's domain may
// use is internal/tenants' rule, applied by the domain manager.

// tenantRoutes: the tenants, their quotas and usage.
func (s *Server) tenantRoutes() []route {
	return []route{
		{"GET", "/tenants", auth.TenantRead, func(w http.ResponseWriter, r *http.Request) {
			all, err := s.tenants.List(r.Context())
			p := principalOf(r.Context())
			out := []api.Tenant{}
			for _, t := range all {
				if p.Sees(t.Name) {
					out = append(out, t)
				}
			}
			reply(w, out, err)
		}},
		{"POST", "/tenants", auth.TenantManage, handle(func(r *http.Request, req api.TenantRequest) (any, error) {
			t, err := s.tenants.Create(r.Context(), req)
			if err == nil {
				s.log.Info("tenant created", "tenant", t.Name, "memory_mib", t.Quota.MemoryMiB, "vcpus", t.Quota.VCPUs, "by", principalOf(r.Context()).String())
			}
			return t, err
		})},
		{"GET", "/tenants/{tenant}", auth.TenantRead, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.tenants.Get(r.Context(), r.PathValue("tenant"))
			reply(w, out, err)
		}},
		{"PUT", "/tenants/{tenant}", auth.TenantManage, handle(func(r *http.Request, req api.TenantUpdate) (any, error) {
			t, err := s.tenants.Update(r.Context(), r.PathValue("tenant"), req)
			if err == nil {
				s.log.Info("tenant quota changed", "tenant", t.Name, "memory_mib", t.Quota.MemoryMiB, "vcpus", t.Quota.VCPUs, "by", principalOf(r.Context()).String())
			}
			return t, err
		})},
		{"DELETE", "/tenants/{tenant}", auth.TenantManage, handle(func(r *http.Request, _ struct{}) (any, error) {
			err := s.tenants.Delete(r.Context(), r.PathValue("tenant"))
			if err == nil {
				s.log.Info("tenant deleted", "tenant", r.PathValue("tenant"), "by", principalOf(r.Context()).String())
			}
			return struct{}{}, err
		})},
	}
}

// owners says who owns what a path names: its tenant ("" = the host),
// whether the host shares it with the tenants, or the object's own
// not-found error.
type owners interface {
	owner(kind, name string) (tenant string, shared bool, err error)
}

// ownedParams are the path parameters that name an object a tenant may
// own, by kind.
var ownedParams = map[string]string{"name": "domain", "network": "network", "pool": "pool", "tenant": "tenant"}

// liveOwners looks the objects up in the daemon's managers.
type liveOwners struct{ s *Server }

func (o liveOwners) owner(kind, name string) (string, bool, error) {
	switch kind {
	case "domain":
		t, err := o.s.mgr.Owner(name)
		return t, false, err
	case "network":
		n, err := o.s.nets.Get(name)
		return n.Tenant, n.Shared, err
	case "pool":
		p, err := o.s.pools.Get(context.Background(), name)
		return p.Tenant, p.Shared, err
	}
	return name, false, o.s.tenants.Exists(context.Background(), name)
}

// notFoundAs is the answer for an object of kind that does not exist,
// word for word as its owner package says it.
func notFoundAs(kind, name string) error {
	switch kind {
	case "domain":
		return domain.NotFound(name)
	case "network":
		return netmgr.NotFound(name)
	case "pool":
		return storage.NotFound(name)
	}
	return tenants.NotFound(name)
}

// visible lets a tenant's principal through only to what its tenant owns
// (and to read what the host shares); anything else answers as if it did
// not exist. Host-wide roles see everything.
func (s *Server) visible(r *http.Request, p auth.Principal, params []string) error {
	if !p.Role.Tenanted() {
		return nil
	}
	for _, param := range params {
		kind, ok := ownedParams[param]
		if !ok {
			continue
		}
		name := r.PathValue(param)
		if s.owners == nil {
			return notFoundAs(kind, name) // no owners known: deny
		}
		tenant, shared, err := s.owners.owner(kind, name)
		switch {
		case err != nil:
			return err
		case tenant == p.Tenant:
		case shared && r.Method == http.MethodGet:
		case shared:
			return api.Errorf(api.ErrForbidden, "%s %s is the host's, shared with the tenants to read: %s may not change it", kind, name, p)
		default:
			return notFoundAs(kind, name)
		}
	}
	return nil
}

// ownerFor is the tenant a new object asked for by p belongs to: a
// tenant's principal makes only its own tenant's (asking for another is
// refused); a host-wide role names any existing tenant, or none (the
// host's own).
func (s *Server) ownerFor(r *http.Request, asked string) (string, error) {
	p := principalOf(r.Context())
	if p.Role.Tenanted() {
		if asked != "" && asked != p.Tenant {
			return "", api.Errorf(api.ErrForbidden, "%s makes objects of its own tenant only, not of %q", p, asked)
		}
		return p.Tenant, nil
	}
	if asked != "" {
		if err := s.tenants.Exists(r.Context(), asked); err != nil {
			return "", err
		}
	}
	return asked, nil
}

// tenantPath applies the tenants' rule to a file a tenant's principal
// names on the host (a save file, an archive, an import directory): it
// must be in one of its tenant's pools (or read from a shared one). The
// host's roles name any path the disk policy allows.
func (s *Server) tenantPath(r *http.Request, what, path string, write bool) error {
	p := principalOf(r.Context())
	if !p.Role.Tenanted() || path == "" {
		return nil
	}
	if !filepath.IsAbs(path) {
		return api.Errorf(api.ErrInvalid, "%s %q must be an absolute path", what, path)
	}
	return s.tenants.CheckFile(p.Tenant, what, path, write)
}

// checkImport decides an import's owner and checks the files a
// tenant's principal names (the archive's scratch copy is the daemon's
// own, in STATE/imports).
func (s *Server) checkImport(r *http.Request, req *api.ImportRequest) (err error) {
	if req.Tenant, err = s.ownerFor(r, req.Tenant); err != nil {
		return err
	}
	if err := s.tenantPath(r, "archive", req.Path, false); err != nil {
		return err
	}
	return s.tenantPath(r, "import directory", req.Dir, true)
}

// seenDomains keeps the domains p may see.
func seenDomains(p auth.Principal, ds []api.Domain) []api.Domain {
	out := make([]api.Domain, 0, len(ds))
	for _, d := range ds {
		if p.Sees(d.Tenant) {
			out = append(out, d)
		}
	}
	return out
}

// seenStats keeps the figures of the domains p may see; to a tenant the
// host's memory is its quota (top's MEM% is of that), not the host's.
func (s *Server) seenStats(p auth.Principal, st api.Stats) api.Stats {
	if !p.Role.Tenanted() {
		return st
	}
	var ds []api.DomainStats
	for _, d := range st.Domains {
		if p.Sees(d.Tenant) {
			ds = append(ds, d)
		}
	}
	st.Domains = ds
	st.MemTotalKiB, st.MemFreeKiB = 0, 0
	if t, ok := s.ledger.Tenant(p.Tenant); ok {
		st.MemTotalKiB = int64(t.MemoryMiB) << 10
		st.MemFreeKiB = int64(max(t.MemoryMiB-t.UsedMemoryMiB, 0)) << 10
	}
	return st
}

// seenPools keeps the pools p may see: its tenant's and the shared ones.
func seenPools(p auth.Principal, ps []api.Pool) []api.Pool {
	out := []api.Pool{}
	for _, pl := range ps {
		if p.Sees(pl.Tenant) || pl.Shared {
			out = append(out, pl)
		}
	}
	return out
}

// seenNetworks keeps the networks p may see: its tenant's and the shared
// ones.
func seenNetworks(p auth.Principal, ns []api.Network) []api.Network {
	out := []api.Network{}
	for _, n := range ns {
		if p.Sees(n.Tenant) || n.Shared {
			out = append(out, seenNetwork(p, n))
		}
	}
	return out
}

// seenNetwork is n as p sees it: a tenant is not shown the ports (other
// tenants' taps) of a network that is not its own.
func seenNetwork(p auth.Principal, n api.Network) api.Network {
	if !p.Sees(n.Tenant) {
		n.Ports = nil
	}
	return n
}

// createVolume makes a volume; in a tenant's pool, within its disk
// quota (a clone of a template counts its template's size).
func (s *Server) createVolume(r *http.Request, pool string, req api.VolumeRequest) (api.Volume, error) {
	ctx := r.Context()
	pl, err := s.pools.Get(ctx, pool)
	if err != nil || pl.Tenant == "" {
		return s.pools.CreateVolume(ctx, pool, req)
	}
	size := req.SizeB
	if req.From != "" && size == 0 {
		if tpl, err := storage.Volume(pl, req.From); err == nil {
			size = tpl.VirtualB
		}
	}
	var v api.Volume
	err = s.tenants.WithDisk(ctx, pl.Tenant, size, fmt.Sprintf("volume create %s %s", pool, req.Name), func() error {
		v, err = s.pools.CreateVolume(ctx, pool, req)
		return err
	})
	return v, err
}

// resizeVolume grows a volume; in a tenant's pool, within its disk quota.
func (s *Server) resizeVolume(r *http.Request, pool, name string, size int64) (api.Volume, error) {
	ctx := r.Context()
	pl, err := s.pools.Get(ctx, pool)
	if err != nil || pl.Tenant == "" {
		return s.pools.ResizeVolume(ctx, pool, name, size)
	}
	old, err := storage.Volume(pl, name)
	if err != nil {
		return old, err
	}
	var v api.Volume
	err = s.tenants.WithDisk(ctx, pl.Tenant, max(size-old.VirtualB, 0), fmt.Sprintf("volume resize %s %s", pool, name), func() error {
		v, err = s.pools.ResizeVolume(ctx, pool, name, size)
		return err
	})
	return v, err
}

// seenLeases keeps the leases of the domains p may see (a shared NAT
// network holds other tenants' leases too).
func (s *Server) seenLeases(p auth.Principal, ls []api.Lease) []api.Lease {
	if !p.Role.Tenanted() {
		return ls
	}
	out := []api.Lease{}
	for _, l := range ls {
		if t, err := s.mgr.Owner(l.Domain); err == nil && t == p.Tenant {
			out = append(out, l)
		}
	}
	return out
}
