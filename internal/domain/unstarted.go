package domain

import (
	"context"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
)

// Unstarted is a domain created paused whose vCPUs never ran (its QEMU
// is in prelaunch): it has no state to migrate, so it moves cold, as
// its definition.
type Unstarted struct {
	Spec    api.DomainSpec // its definition's, or the running spec (secrets kept)
	Tenant  string
	Defined bool
}

// Unstarted says whether name is such a domain, and what recreates it.
func (m *Manager) Unstarted(ctx context.Context, name string) (Unstarted, bool) {
	d, err := m.get(name)
	if err != nil {
		return Unstarted{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inst == nil {
		return Unstarted{}, false
	}
	if st, err := d.inst.Status(ctx); err != nil || st != engine.RunPrelaunch {
		return Unstarted{}, false
	}
	u := Unstarted{Spec: d.rec.Spec, Tenant: d.tenant, Defined: d.def != nil}
	if d.def != nil {
		u.Spec = d.def.Spec
	}
	// Its disks are made already: they move as they are.
	u.Spec.Provision = nil
	return u, true
}
