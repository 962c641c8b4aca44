package domain

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/config"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/revert"
	domspec "github.com/ringfence/ringfence/internal/spec"
	"github.com/ringfence/ringfence/internal/storage"
)

// clonePlan is one writable disk of a clone: src's image (frozen from now
// on), src's new overlay on it, and the clone's overlay on it.
type clonePlan struct {
	idx              int
	base, fmt        string
	overlay, cloneTo string
}

// CloneOptions are a clone's own settings.
type CloneOptions struct {
	Paused bool
	// Vifs are xl vif specs for the clone's vifs, by index ("" keeps the
	// source's, with a new MAC): a clone on the same bridge needs its own
	// ip= at least.
	Vifs []string
	// Set are key=value settings of its own (memory=512, ...).
	Set []string
	// Tenant owns the clone ("" keeps the source's owner).
	Tenant string
}

// Clone makes domain newName from src: same configuration, new MACs, and
// every writable disk a thin qcow2 clone. A thin clone needs an image that
// never changes again, so src's disks are first moved onto fresh overlays
// (live, through the engine, when src runs: the frozen images are a
// crash-consistent point of the running guest) and the clones are made on
// the frozen images. src keeps running throughout (paused for the
// instant of the switch when it has several disks, so they agree).
// Read-only disks and CD-ROMs are shared as they are.
//
// Nothing is made until the clone is known to fit: its spec is validated
// and admitted (ledger, MACs, addresses, files) first; the overlays and
// the switch come in the admitted step of its create, whose revert stack
// removes them if a later step fails. src is never moved for a clone that
// is then refused.
func (m *Manager) Clone(ctx context.Context, src, newName string, o CloneOptions) (_ api.Domain, err error) {
	defer m.after(m.about(ctx, newName), api.EvCreated, "clone of "+src, &err)
	d, err := m.get(src)
	if err != nil {
		return api.Domain{}, err
	}
	d.mu.Lock()
	if d.migrating {
		d.mu.Unlock()
		return api.Domain{}, api.Errorf(api.ErrConflict, "%s is being migrated; clone it afterwards", src)
	}
	srcSpec := d.rec.Spec
	d.mu.Unlock()
	tenant := cmp.Or(o.Tenant, d.tenant)
	if _, err := m.get(newName); err == nil {
		return api.Domain{}, api.Errorf(api.ErrConflict, "a domain named %q already exists: pick another name", newName)
	}
	spec, err := cloneSpec(srcSpec, newName, o)
	if err != nil {
		return api.Domain{}, err
	}
	plans, err := clonePlans(src, newName, srcSpec)
	if err != nil {
		return api.Domain{}, err
	}
	skip := map[string]bool{}
	for _, p := range plans {
		spec.Disks[p.idx].Target, spec.Disks[p.idx].Format = p.cloneTo, "qcow2"
		skip[spec.Disks[p.idx].Guest] = true
	}
	accel, err := m.validateExcept(&spec, tenant, skip, false)
	if err != nil {
		return api.Domain{}, fmt.Errorf("the clone %s: %w", newName, err)
	}
	if err := m.cloneQuota(ctx, tenant, newName, plans); err != nil {
		return api.Domain{}, err
	}
	switchSrc := func(r *revert.Reverter) error {
		return m.cloneDisks(ctx, d, srcSpec, newName, plans, r)
	}
	v, err := m.create(ctx, spec, accel, startOpts{paused: o.Paused, admitted: switchSrc, tenant: tenant})
	if err != nil {
		return api.Domain{}, err
	}
	m.o.Log.Info("domain cloned", "from", src, "name", newName, "disks", len(plans))
	return v, nil
}

// cloneQuota checks the disk quota of the clone's tenant: each disk adds
// two overlays of its base's virtual size (src's and the clone's, both
// in the base's pool).
func (m *Manager) cloneQuota(ctx context.Context, tenant, newName string, plans []clonePlan) error {
	if m.o.Tenancy == nil || tenant == "" || len(plans) == 0 {
		return nil
	}
	var add int64
	for _, p := range plans {
		n, err := storage.VirtualSize(p.base, p.fmt)
		if err != nil {
			return err
		}
		add += 2 * n
	}
	return m.o.Tenancy.CheckDisk(ctx, tenant, add, "the clone "+newName+"'s overlays")
}

// clonePlans lays out the overlays of a clone, refusing what cannot be
// thin-cloned and files that exist.
func clonePlans(src, newName string, spec api.DomainSpec) ([]clonePlan, error) {
	stamp := time.Now().UTC().Format("20060102T150405")
	var plans []clonePlan
	for i, dk := range spec.Disks {
		if dk.Target == "" || dk.CDROM || dk.Access == "ro" {
			continue
		}
		fi, err := os.Stat(dk.Target)
		if err != nil {
			return nil, api.Errorf(api.ErrInvalid, "disk %s of %s: %v", dk.Guest, src, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, api.Errorf(api.ErrInvalid, "disk %s of %s is a block device (%s): thin clones need image files; copy it with qemu-img convert first", dk.Guest, src, dk.Target)
		}
		dir := filepath.Dir(dk.Target)
		p := clonePlan{idx: i, base: dk.Target, fmt: dk.Format,
			overlay: filepath.Join(dir, fmt.Sprintf("%s-%s.%s.qcow2", src, dk.Guest, stamp)),
			cloneTo: filepath.Join(dir, fmt.Sprintf("%s-%s.qcow2", newName, dk.Guest))}
		for _, f := range []string{p.overlay, p.cloneTo} {
			if _, err := os.Lstat(f); err == nil {
				return nil, api.Errorf(api.ErrConflict, "%s already exists; remove it or pick another name for the clone", f)
			}
		}
		plans = append(plans, p)
	}
	return plans, nil
}

// cloneDisks is the admitted step of a clone's create: both overlays of
// each disk made, src switched onto its own (live when it runs), the
// chains recorded. The clone's overlays are undone by r if a later step
// fails; src's, once it writes to them, are its disks and stay recorded.
func (m *Manager) cloneDisks(ctx context.Context, d *dom, snapshot api.DomainSpec, newName string, plans []clonePlan, r *revert.Reverter) error {
	if len(plans) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	src := d.rec.Spec.Name
	for _, p := range plans {
		if cur := d.rec.Spec.Disks; p.idx >= len(cur) || cur[p.idx].Target != snapshot.Disks[p.idx].Target {
			return api.Errorf(api.ErrConflict, "%s's disks changed while it was being cloned; try again", src)
		}
	}
	// src's overlays go if anything fails before it writes to them; the
	// clone's are r's (undone if the clone's create fails later).
	srcR := revert.New()
	defer srcR.Fail()
	for _, p := range plans {
		if err := storage.Overlay(p.base, p.fmt, p.overlay, 0); err != nil {
			return err
		}
		overlay := p.overlay
		srcR.Add(func() { os.Remove(overlay) })
		if err := storage.Overlay(p.base, p.fmt, p.cloneTo, 0); err != nil {
			return err
		}
		cloneTo := p.cloneTo
		r.Add(func() { os.Remove(cloneTo) })
	}
	if d.inst != nil {
		if n, err := m.switchLive(ctx, d, plans); err != nil {
			// Disks already switched stay on their overlays (the guest
			// writes there now): recorded; the rest go.
			srcR.Success()
			for _, p := range plans[n:] {
				os.Remove(p.overlay)
			}
			if n > 0 {
				m.useOverlays(ctx, d, plans[:n])
				m.recordChains(ctx, src, "", plans[:n])
			}
			return fmt.Errorf("snapshotting %s's disks: %w", src, err)
		}
	}
	srcR.Success()
	if err := m.useOverlays(ctx, d, plans); err != nil {
		return err
	}
	m.recordChains(ctx, src, newName, plans)
	return nil
}

// switchLive moves a running domain onto its new overlays, paused across
// them when there are several so they agree; n disks were switched.
// Caller holds d.mu.
func (m *Manager) switchLive(ctx context.Context, d *dom, plans []clonePlan) (n int, err error) {
	snap, ok := d.inst.(engine.DiskSnapshotter)
	if !ok {
		return 0, api.Errorf(api.ErrUnavailable, "this engine cannot snapshot a running domain's disks")
	}
	var ovs []engine.Overlay
	for _, p := range plans {
		ovs = append(ovs, engine.Overlay{Disk: d.rec.Spec.Disks[p.idx].Guest, Path: p.overlay, Base: p.base})
	}
	// Frozen through the guest agent across the switch: the frozen
	// image, the clone's base, is application-consistent.
	defer m.freezeGuest(ctx, d, d.rec.Spec.Name)()
	if st, err := d.inst.Status(ctx); err == nil && st == engine.RunRunning && len(ovs) > 1 && d.inst.Pause(ctx) == nil {
		defer d.inst.Resume(context.Background())
	}
	return snap.SnapshotDisks(ctx, ovs)
}

// recordChains notes the overlays a clone made on each frozen image: src's
// (its disk from now on) and, when newName is given, the clone's.
func (m *Manager) recordChains(ctx context.Context, src, newName string, plans []clonePlan) {
	why := "clone " + src + " " + newName
	for _, p := range plans {
		deps := []storage.Dependent{{Path: p.overlay, Domain: src, Why: why}}
		if newName != "" {
			deps = append(deps, storage.Dependent{Path: p.cloneTo, Domain: newName, Why: why})
		}
		for _, dep := range deps {
			if err := m.o.Chains.Record(ctx, p.base, dep); err != nil {
				m.o.Log.Error("recording an overlay chain", "base", p.base, "overlay", dep.Path, "err", err)
			}
		}
	}
}

// useOverlays records that d's disks now live on their overlays. Caller
// holds d.mu.
func (m *Manager) useOverlays(ctx context.Context, d *dom, plans []clonePlan) error {
	disks := append([]api.Disk(nil), d.rec.Spec.Disks...)
	for _, p := range plans {
		disks[p.idx].Target = p.overlay
		disks[p.idx].Format = "qcow2"
	}
	d.rec.Spec.Disks = disks
	if err := m.save(ctx, d); err != nil {
		// The guest writes to its overlays now: a restart from the old
		// record would go back to the frozen images. Say so loudly.
		m.o.Log.Error("recording the overlays of a cloned domain; its record still names the frozen images", "name", d.rec.Spec.Name, "err", err)
		return err
	}
	m.view(d)
	return nil
}

// cloneSpec is src's configuration for a new domain: its name, no UUID,
// MACs (and tap names) of its own, then the clone's own vifs and settings.
func cloneSpec(src api.DomainSpec, name string, o CloneOptions) (api.DomainSpec, error) {
	s := src
	s.Name = name
	s.UUID = ""
	// A clone is a new domain on new disks: HA is the admin's to turn on
	// (`ringfence ha`), with its checks.
	s.HA = false
	s.Disks = append([]api.Disk(nil), src.Disks...)
	s.Vifs = append([]api.Vif(nil), src.Vifs...)
	for i := range s.Vifs {
		s.Vifs[i].MAC = domspec.GenerateMAC(name, i)
		s.Vifs[i].VifName = ""
		s.Vifs[i].Port = ""
	}
	for i, vs := range o.Vifs {
		if strings.TrimSpace(vs) == "" {
			continue
		}
		if i >= len(s.Vifs) {
			return s, api.Errorf(api.ErrInvalid, "--vif %d: %s has %d vif(s); a clone's vifs follow the source's", i+1, src.Name, len(src.Vifs))
		}
		v, _, err := domspec.ParseVif(vs)
		if err != nil {
			return s, api.Errorf(api.ErrInvalid, "--vif %q: %v", vs, err)
		}
		if v.MAC == "" {
			v.MAC = s.Vifs[i].MAC
		}
		if v.Bridge == "" {
			v.Bridge = s.Vifs[i].Bridge
		}
		s.Vifs[i] = v
	}
	if err := config.ApplySettings(&s, o.Set); err != nil {
		return s, api.Errorf(api.ErrInvalid, "%v", err)
	}
	return s, nil
}
