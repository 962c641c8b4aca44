package domain

import (
	"context"

	"github.com/ringfence/ringfence/internal/api"
)

// HAGate says whether an HA domain may start on this host: restart is
// true for a start the domain's own on_* action asks for (a crash, a
// reboot), false for an admin's start. The cluster's HA (the daemon)
// answers from its owner keys: never while another host owns the
// domain, never after this host fenced it, never without the cluster.
type HAGate func(name string, restart bool) bool

// SetHAGate installs the gate (before Recover: a domain found dead at
// start is not restarted behind the cluster's back).
func (m *Manager) SetHAGate(g HAGate) { m.haGate.Store(&g) }

// HALost is told of an HA domain found dead at the daemon's start (its
// host powered off, or daemon, fence guard and QEMU killed together):
// not a stop anyone asked for, so the cluster's HA decides where it runs
// again (here, if this host's lease outlived it; else a survivor).
type HALost func(name string)

// SetHALost installs the HA side's HALost (before Recover).
func (m *Manager) SetHALost(f HALost) { m.haLost.Store(&f) }

// haLostHere tells the HA side that d was found dead and reports whether
// it took the domain over (its on_crash is then not applied: HA's
// restart needs the domain kept). Caller holds d.mu.
func (m *Manager) haLostHere(d *dom) bool {
	f := m.haLost.Load()
	if !d.rec.Spec.HA || f == nil {
		return false
	}
	(*f)(d.rec.Spec.Name)
	return true
}

// haAllows asks the gate about d (non-HA domains always may). Caller
// holds d.mu.
func (m *Manager) haAllows(d *dom, restart bool) bool {
	g := m.haGate.Load()
	if !d.rec.Spec.HA || g == nil || (*g)(d.rec.Spec.Name, restart) {
		return true
	}
	m.o.Log.Warn("HA domain not started here: the cluster's HA does not allow it (fenced here, owned by another host, or no quorum)",
		"name", d.rec.Spec.Name, "restart", restart)
	if restart {
		d.rec.LastReason = "fenced: this host lost the cluster; HA restarts it on a survivor"
	}
	return false
}

// SetHA turns a domain's HA on or off in its spec: the running record's
// and its definition's alike. check judges the spec it would have (the
// daemon's shared-storage and N+1 checks); on any error nothing changes.
func (m *Manager) SetHA(ctx context.Context, name string, on bool, check func(api.DomainSpec) error) (api.Domain, error) {
	d, err := m.get(name)
	if err != nil {
		return api.Domain{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rec.Spec.HA == on {
		return m.view(d), nil
	}
	next := d.rec.Spec
	next.HA = on
	if on {
		if err := check(next); err != nil {
			return api.Domain{}, err
		}
	}
	if d.def != nil {
		def := *d.def
		def.Spec.HA = on
		if def.Pending != nil {
			p := *def.Pending
			p.HA = on
			def.Pending = &p
		}
		if err := m.saveDef(ctx, name, &def); err != nil {
			return api.Domain{}, err
		}
		*d.def = def
	}
	old := d.rec.Spec
	d.rec.Spec = next
	if d.inst != nil {
		if err := m.save(ctx, d); err != nil {
			d.rec.Spec = old
			return api.Domain{}, err
		}
	}
	m.o.Log.Info("domain HA set", "name", name, "on", on)
	return m.view(d), nil
}

// NeedOf is what spec asks of a host's ledger: its maximum memory plus
// QEMU's overhead, and its maximum vCPUs (HA's placement and plan).
func (m *Manager) NeedOf(spec api.DomainSpec) (memMiB, vcpus int) {
	accel, err := m.accelFor(spec)
	if err != nil {
		accel = m.o.Accel.Name
	}
	mem, cpus := spec.MaxMemMiB, spec.MaxVCPUs
	if mem == 0 {
		mem = spec.MemoryMiB
	}
	if cpus == 0 {
		cpus = spec.VCPUs
	}
	return mem + m.overhead(spec, accel), cpus
}
