package domain

// Admission: what a domain may be given before anything is made: its
// spec checked against the host, its disks and bridges not in conflict,
// room in the ledger, a QEMU uid and a domain ID.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/procfs"
	domspec "github.com/ringfence/ringfence/internal/spec"
	"github.com/ringfence/ringfence/internal/storage"
)

// validate checks everything about a spec of a domain of tenant ("" =
// the host) that can be checked without changing the host: the tenant
// may use its files and bridges, files exist and have the right type and
// the disk policy allows them, bridges exist.
func (m *Manager) validate(spec *api.DomainSpec, tenant string) (string, error) {
	return m.validateExcept(spec, tenant, nil, false)
}

// validateExcept is validate, without the file checks of the disks in
// skip (by guest name): an incoming migration creates those itself; and
// with incoming, without testing the images' locks (on shared storage the
// source holds them until the handover).
func (m *Manager) validateExcept(spec *api.DomainSpec, tenant string, skip map[string]bool, incoming bool) (string, error) {
	if err := domspec.Normalize(spec); err != nil {
		return "", api.Errorf(api.ErrInvalid, "%v", err)
	}
	accel, err := m.accelFor(*spec)
	if err != nil {
		return "", err
	}
	check := func(what, p string, use storage.Use, format string) error {
		return m.checkFile(tenant, what, p, use, format, incoming)
	}
	if spec.Kernel != "" {
		if err := check("kernel", spec.Kernel, storage.UseBoot, ""); err != nil {
			return "", err
		}
	}
	if spec.Ramdisk != "" {
		if err := check("ramdisk", spec.Ramdisk, storage.UseBoot, ""); err != nil {
			return "", err
		}
	}
	for _, d := range spec.Disks {
		if d.Target == "" && d.CDROM {
			continue
		}
		if skip[d.Guest] {
			// Made by the caller (a migration's copy): only the
			// tenant's rule applies to where.
			if err := m.tenantFile(tenant, "disk "+d.VDev, d.Target, true); err != nil {
				return "", err
			}
			continue
		}
		use := storage.UseDisk
		if d.Access == "ro" || d.CDROM {
			use = storage.UseDiskRO
		}
		if err := check("disk "+d.VDev, d.Target, use, d.Format); err != nil {
			return "", err
		}
	}
	if _, err := host.ParseCPUList(spec.CPUs, spec.MaxVCPUs, m.o.HostCPUs); err != nil {
		return "", api.Errorf(api.ErrInvalid, "cpus: %v", err)
	}
	for i, v := range spec.Vifs {
		if err := m.checkVif(tenant, v); err != nil {
			return "", api.Errorf(api.ErrCode(err, api.ErrInvalid), "vif %d: %v", i, err)
		}
	}
	return accel, nil
}

// checkFile checks one file a domain of tenant is to use (what: "kernel",
// "disk xvda"): the tenants' rule, its type, no other domain's conflicting
// use, no overlay standing on a disk, the disk policy. incoming: a
// migration's (its source still holds the images).
func (m *Manager) checkFile(tenant, what, p string, use storage.Use, format string, incoming bool) error {
	// The tenant's rule first: a tenant learns nothing of a path it may
	// not use, not even whether it exists.
	if err := m.tenantFile(tenant, what, p, use == storage.UseDisk); err != nil {
		return err
	}
	from := storage.Local
	if incoming {
		from = storage.FromPeer
	}
	if !filepath.IsAbs(p) {
		return api.Errorf(api.ErrInvalid, "%s %q must be an absolute path", what, p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return api.Errorf(api.ErrInvalid, "%s %s: %v; fix the path", what, p, errors.Unwrap(err))
	}
	allowBlock := use != storage.UseBoot
	if !fi.Mode().IsRegular() && !(allowBlock && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0) {
		return api.Errorf(api.ErrInvalid, "%s %s is not a regular file%s", what, p, map[bool]string{true: " or block device", false: ""}[allowBlock])
	}
	if use == storage.UseBoot {
		return m.o.Policy.CheckFrom(from, use, p)
	}
	if !incoming {
		if err := m.ownUse(p, strings.TrimPrefix(what, "disk "), use); err != nil {
			return err
		}
	}
	if use == storage.UseDisk {
		if err := m.o.Chains.CheckWritable(context.Background(), what, p); err != nil {
			return err
		}
	}
	return m.o.Policy.CheckImage(from, use, p, format)
}

// accelFor is the accelerator a spec runs under here: the host's, or the
// one accel= forces (kvm only where the host has it).
func (m *Manager) accelFor(spec api.DomainSpec) (string, error) {
	switch spec.Accel {
	case "tcg":
		return "tcg", nil
	case "kvm":
		if m.o.Accel.Name != "kvm" {
			return "", api.Errorf(api.ErrInvalid, "accel = \"kvm\" asked but this host cannot use KVM: %s; remove accel= to use TCG", m.o.Accel.Reason)
		}
		return "kvm", nil
	}
	return m.o.Accel.Name, nil
}

// diskInUse refuses a disk another live domain here has open, unless both
// only read it. (QEMU's own image locking is off: see the engine.) Caller
// holds m.mu; other domains are read from their last view, never locked.
func (m *Manager) diskInUse(spec api.DomainSpec) error {
	for _, d := range spec.Disks {
		if d.Target == "" {
			continue
		}
		fi, err := os.Stat(d.Target)
		if err != nil {
			continue // validation reports it
		}
		ro := d.Access == "ro" || d.CDROM
		for name, v := range m.views(true) {
			for _, x := range v.Spec.Disks {
				if ro && (x.Access == "ro" || x.CDROM) {
					continue
				}
				if sameFile(fi, x.Target) {
					return api.Errorf(api.ErrConflict, "disk %s: %s is already in use by domain %s (%s); a disk can be shared only read-only: add ,r to both or give this domain its own copy",
						d.VDev, d.Target, name, x.VDev)
				}
			}
		}
	}
	return nil
}

// ownUse says which of this host's domains already uses an image in a way
// use conflicts with (a clearer answer than the image locks, which only
// say "another process"; create checks again under the lock).
func (m *Manager) ownUse(path, vdev string, use storage.Use) error {
	if use == storage.UseBoot {
		return nil
	}
	d := api.Disk{Target: path, VDev: vdev, Access: "rw"}
	if use == storage.UseDiskRO {
		d.Access = "ro"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.diskInUse(api.DomainSpec{Disks: []api.Disk{d}})
}

// views are the domains' last views by name (only live ones: not shut
// down or crashed, when live). Caller holds m.mu; no domain is locked.
func (m *Manager) views(live bool) map[string]*api.Domain {
	out := map[string]*api.Domain{}
	for name, d := range m.doms {
		v := d.snap.Load()
		if v == nil || live && (v.State == api.StateShutdown || v.State == api.StateCrashed) {
			continue
		}
		out[name] = v
	}
	return out
}

// sameFile reports whether path names the file fi describes.
func sameFile(fi os.FileInfo, path string) bool {
	if path == "" {
		return false
	}
	xi, err := os.Stat(path)
	return err == nil && os.SameFile(fi, xi)
}

// BridgeUsers names the live domains with a vif on bridge.
func (m *Manager) BridgeUsers(bridge string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for name, v := range m.views(true) {
		for _, x := range v.Spec.Vifs {
			if m.bridge(x.Bridge) == bridge {
				out = append(out, name)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// DiskUsers names the domains (in any state) whose disks include path.
func (m *Manager) DiskUsers(path string) []string {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for name, v := range m.views(false) {
		for _, x := range v.Spec.Disks {
			if sameFile(fi, x.Target) {
				out = append(out, name)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// admit checks the ledger and the host's actually free memory. Caller
// holds m.mu.
// The ledger holds maxmem (the balloon may grow back to it at any time) and
// maxvcpus, so whatever mem-set or vcpu changes later ask is already paid.
func (m *Manager) admit(spec api.DomainSpec, tenant, accel string) error {
	if err := m.unaccountedErr(); err != nil {
		return err
	}
	over := m.overhead(spec, accel)
	memMiB := spec.MaxMemMiB
	if hm, err := host.ReadMemory(); err == nil && memMiB+over > hm.AvailableMiB {
		return api.Errorf(api.ErrInsufficient, "memory: %s asks %d MiB (%d guest + %d QEMU overhead) but the host has only %d MiB available; lower memory/maxmem",
			spec.Name, memMiB+over, memMiB, over, hm.AvailableMiB)
	}
	return m.o.Ledger.Reserve(m.ledgerEntry(spec, tenant, accel))
}

// ledgerEntry is what a domain holds in the ledger: maxmem, QEMU's
// overhead, maxvcpus, drawn from its tenant's reservation.
func (m *Manager) ledgerEntry(spec api.DomainSpec, tenant, accel string) api.LedgerEntry {
	return api.LedgerEntry{Domain: spec.Name, Tenant: tenant, MemoryMiB: spec.MaxMemMiB, OverheadMiB: m.overhead(spec, accel), VCPUs: spec.MaxVCPUs}
}

// tenantFile applies the tenants' rule to a file a domain of tenant is
// to use (write: not read-only).
func (m *Manager) tenantFile(tenant, what, path string, write bool) error {
	if m.o.Tenancy == nil {
		return nil
	}
	return m.o.Tenancy.CheckFile(tenant, what, path, write)
}

// allocUID picks the QEMU uid for d's next incarnation: the lowest in the
// range that no other domain's live QEMU runs as. A uid is free again
// only once its QEMU has exited (exit handling runs after the process is
// gone), so no two QEMUs ever share one.
func (m *Manager) allocUID(d *dom) (int, error) {
	r := m.o.QEMUIDs
	if r.Count == 0 {
		return 0, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	used := map[int]bool{}
	for _, x := range m.doms {
		if x != d {
			if v := x.uid.Load(); v != 0 {
				used[int(v)] = true
			}
		}
	}
	for u := r.Base; u < r.Base+r.Count; u++ {
		if !used[u] {
			d.uid.Store(int64(u))
			return u, nil
		}
	}
	return 0, api.Errorf(api.ErrInsufficient, "every QEMU uid in %d-%d is taken by a running domain: widen serve --qemu-ids", r.Base, r.Base+r.Count-1)
}

// allocID takes the next domain ID (never 0: that is the host, as in Xen).
// The counter is persisted with the domain record (save), so a create that
// fails leaves the store untouched.
func (m *Manager) allocID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.nextID < 1 {
		m.nextID = 1
	}
	id := m.nextID
	m.nextID++
	return id
}

// unaccountedErr refuses admissions while a QEMU runs that no record
// accounts for (its resources are unknown). It clears itself once they
// are gone. Caller holds m.mu.
func (m *Manager) unaccountedErr() error {
	var alive []int
	for _, p := range m.unaccounted {
		if procfs.Alive(p, 0) {
			alive = append(alive, p)
		}
	}
	m.unaccounted = alive
	if len(alive) == 0 {
		return nil
	}
	return api.Errorf(api.ErrInsufficient, "new domains are refused: QEMU processes %v run from run dirs no record names, so their resources are unknown (see the daemon log); stop them, or restore the store that knew them", alive)
}

// HostWarnings are the conditions an admin must resolve: an oversold
// ledger after a restart with stricter limits, QEMUs no record accounts
// for. While they hold, new domains are refused.
func (m *Manager) HostWarnings() []string {
	var out []string
	if err := m.o.Ledger.Oversold(); err != nil {
		out = append(out, err.Error()+": new domains are refused until some stop")
	}
	m.mu.Lock()
	if err := m.unaccountedErr(); err != nil {
		out = append(out, err.Error())
	}
	m.mu.Unlock()
	return out
}
