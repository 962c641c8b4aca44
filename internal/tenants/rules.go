package tenants

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
)

// What a domain may use, by its owner ("" = the host), in one rule:
//
//   - a file (disk, CD-ROM medium, kernel, ramdisk) in a tenant's pool:
//     only that tenant's domains;
//   - a file in a host pool marked shared: every domain, but a tenant's
//     domains only read-only;
//   - any other file (a host pool, or outside every pool): host domains
//     only, as the disk policy allows;
//   - a tenant's network: only that tenant's domains; a host network
//     marked shared: every domain; any other bridge (a host network, an
//     unmanaged bridge): host domains only. A vif on no bridge is fine.
//
// A tenant's domain is never told more than that the file or bridge is
// not one it may use (not whose it is, nor whether it exists), so it
// cannot probe the host with paths.

// CheckFile says whether a domain of tenant may use path (write: not
// read-only); what names it in the refusal ("disk xvda").
func (m *Manager) CheckFile(tenant, what, path string, write bool) error {
	return checkFile(m.pools(context.Background()), tenant, what, path, write)
}

func checkFile(pools []api.Pool, tenant, what, path string, write bool) error {
	p, in := poolOf(pools, path)
	switch {
	case tenant == "" && in && p.Tenant != "":
		return api.Errorf(api.ErrInvalid, "%s: %s is in pool %s of tenant %s: only that tenant's domains may use it (create the domain with --tenant %s)", what, path, p.Name, p.Tenant, p.Tenant)
	case tenant == "":
		return nil
	case in && p.Tenant == tenant:
		return nil
	case in && p.Tenant == "" && p.Shared && !write:
		return nil
	case in && p.Tenant == "" && p.Shared:
		return api.Errorf(api.ErrInvalid, "%s: %s is in the shared pool %s, which a tenant's domains may only read: make it read-only (,r) or copy it into one of tenant %s's pools", what, path, p.Name, tenant)
	}
	return api.Errorf(api.ErrInvalid, "%s: %s is not in one of tenant %s's pools: a tenant's domain may use only files of its tenant's pools (and read the host's shared ones); see `ringfence pool list`", what, path, tenant)
}

// poolOf is the pool whose directory holds path (symbolic links
// resolved, so a link cannot lead out of a pool).
func poolOf(pools []api.Pool, path string) (api.Pool, bool) {
	real := realPath(path)
	for _, p := range pools {
		if dir := realPath(p.Dir); real == dir || strings.HasPrefix(real, dir+"/") {
			return p, true
		}
	}
	return api.Pool{}, false
}

func realPath(p string) string {
	p = filepath.Clean(p)
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// CheckNetwork says whether a domain of tenant may have a vif on bridge
// (a managed network's name or bridge, or any other bridge).
func (m *Manager) CheckNetwork(tenant, bridge string) error {
	var nets []api.Network
	if m.Src.Networks != nil {
		nets = m.Src.Networks()
	}
	return checkNetwork(nets, tenant, bridge)
}

func checkNetwork(nets []api.Network, tenant, bridge string) error {
	if bridge == "" {
		return nil
	}
	var n *api.Network
	for i := range nets {
		if nets[i].Name == bridge || nets[i].Bridge == bridge {
			n = &nets[i]
			break
		}
	}
	switch {
	case tenant == "" && n != nil && n.Tenant != "":
		return api.Errorf(api.ErrInvalid, "bridge %s is network %s of tenant %s: only that tenant's domains may use it", bridge, n.Name, n.Tenant)
	case tenant == "":
		return nil
	case n != nil && (n.Tenant == tenant || n.Tenant == "" && n.Shared):
		return nil
	}
	return api.Errorf(api.ErrInvalid, "bridge %s is not one of tenant %s's networks nor a shared one: a tenant's domain may be only on those (see `ringfence network list`)", bridge, tenant)
}

// DiskUsage is what a tenant's disk quota counts: the virtual size of
// the volumes of its pools, and of its domains' writable disks that are
// not among them (an import's disks, a clone's overlays beside a base).
func (m *Manager) DiskUsage(ctx context.Context, tenant string) (int64, error) {
	sizes := map[string]int64{}
	for _, p := range m.pools(ctx) {
		if p.Tenant != tenant || m.Src.Volumes == nil {
			continue
		}
		vols, err := m.Src.Volumes(p)
		if err != nil {
			return 0, err
		}
		for _, v := range vols {
			sizes[realPath(v.Path)] = v.VirtualB
		}
	}
	for _, d := range m.domains() {
		if d.Tenant != tenant {
			continue
		}
		for _, dk := range d.Spec.Disks {
			p := realPath(dk.Target)
			if _, seen := sizes[p]; seen || dk.Target == "" || dk.CDROM || dk.Access == "ro" || m.Src.DiskSize == nil {
				continue
			}
			if n, err := m.Src.DiskSize(dk.Target, dk.Format); err == nil {
				sizes[p] = n
			}
		}
	}
	var sum int64
	for _, n := range sizes {
		sum += n
	}
	return sum, nil
}

// CheckDisk says whether tenant's disks may grow by add bytes (virtual
// size), for what ("volume create data1 10 GiB"); the host ("") has no
// quota.
func (m *Manager) CheckDisk(ctx context.Context, tenant string, add int64, what string) error {
	if tenant == "" {
		return nil
	}
	r, err := m.load(ctx, tenant)
	if err != nil {
		return err
	}
	used, err := m.DiskUsage(ctx, tenant)
	if err != nil {
		return err
	}
	return diskFits(tenant, r.Quota.DiskBytes, used, add, what)
}

// diskFits is the disk quota's arithmetic.
func diskFits(tenant string, quota, used, add int64, what string) error {
	if used+add <= quota {
		return nil
	}
	return api.Errorf(api.ErrInsufficient, "disk: tenant %s's quota is %s and its volumes and disks hold %s; %s asks %s, %s left; delete volumes or raise the quota (`ringfence tenant set %s --disk SIZE`)",
		tenant, Size(quota), Size(used), what, Size(add), Size(max(quota-used, 0)), tenant)
}

// WithDisk runs fn (which makes add bytes of tenant's disks) only if the
// quota allows it, and no other disk change of a tenant in between.
func (m *Manager) WithDisk(ctx context.Context, tenant string, add int64, what string, fn func() error) error {
	if tenant == "" {
		return fn()
	}
	m.disk.Lock()
	defer m.disk.Unlock()
	if err := m.CheckDisk(ctx, tenant, add, what); err != nil {
		return err
	}
	return fn()
}
