package domain

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/config"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/storage"
)

// clonePlan is one writable disk of a clone: src's image (frozen from now
// on), src's new overlay on it, and the clone's overlay on it.
type clonePlan struct {
	idx              int
	base, fmt        string
	overlay, cloneTo string
}

// Clone makes domain newName from src: same configuration, new MACs, and
// every writable disk a thin qcow2 clone. A thin clone needs an image that
// never changes again, so src's disks are first moved onto fresh overlays
// (live, through the engine, when src runs: the frozen images are a
// crash-consistent point of the running guest) and the clones are made on
// the frozen images. src keeps running throughout (paused for the
// instant of the switch when it has several disks, so they agree).
// Read-only disks and CD-ROMs are shared as they are.
func (m *Manager) Clone(ctx context.Context, src, newName string, paused bool) (api.Domain, error) {
	d, err := m.get(src)
	if err != nil {
		return api.Domain{}, err
	}
	spec := api.DomainSpec{}
	d.mu.Lock()
	locked := true
	defer func() {
		if locked {
			d.mu.Unlock()
		}
	}()
	if d.migrating {
		return api.Domain{}, api.Errorf(api.ErrConflict, "%s is being migrated; clone it afterwards", src)
	}
	spec = cloneSpec(d.rec.Spec, newName)
	if _, err := m.get(newName); err == nil {
		return api.Domain{}, api.Errorf(api.ErrConflict, "a domain named %q already exists: pick another name", newName)
	}
	stamp := time.Now().UTC().Format("20060102T150405")
	var plans []clonePlan
	for i, dk := range d.rec.Spec.Disks {
		if dk.Target == "" || dk.CDROM || dk.Access == "ro" {
			continue
		}
		fi, err := os.Stat(dk.Target)
		if err != nil {
			return api.Domain{}, api.Errorf(api.ErrInvalid, "disk %s of %s: %v", dk.Guest, src, err)
		}
		if !fi.Mode().IsRegular() {
			return api.Domain{}, api.Errorf(api.ErrInvalid, "disk %s of %s is a block device (%s): thin clones need image files; copy it with qemu-img convert first", dk.Guest, src, dk.Target)
		}
		dir := filepath.Dir(dk.Target)
		p := clonePlan{idx: i, base: dk.Target, fmt: dk.Format,
			overlay: filepath.Join(dir, fmt.Sprintf("%s-%s.%s.qcow2", src, dk.Guest, stamp)),
			cloneTo: filepath.Join(dir, fmt.Sprintf("%s-%s.qcow2", newName, dk.Guest))}
		for _, f := range []string{p.overlay, p.cloneTo} {
			if _, err := os.Lstat(f); err == nil {
				return api.Domain{}, api.Errorf(api.ErrConflict, "%s already exists; remove it or pick another name for the clone", f)
			}
		}
		plans = append(plans, p)
	}
	var made []string
	undo := func() {
		for _, f := range made {
			os.Remove(f)
		}
	}
	for _, p := range plans {
		for _, f := range []string{p.overlay, p.cloneTo} {
			if err := storage.Overlay(p.base, p.fmt, f, 0); err != nil {
				undo()
				return api.Domain{}, err
			}
			made = append(made, f)
		}
	}
	// Switch src onto its overlays: live when it runs.
	if d.inst != nil && len(plans) > 0 {
		snap, ok := d.inst.(engine.DiskSnapshotter)
		if !ok {
			undo()
			return api.Domain{}, api.Errorf(api.ErrUnavailable, "this engine cannot snapshot a running domain's disks")
		}
		var ovs []engine.Overlay
		for _, p := range plans {
			ovs = append(ovs, engine.Overlay{Disk: d.rec.Spec.Disks[p.idx].Guest, Path: p.overlay, Base: d.rec.Spec.Disks[p.idx].Target})
		}
		wasRunning := false
		if st, err := d.inst.Status(ctx); err == nil && st == "running" && len(ovs) > 1 {
			wasRunning = d.inst.Pause(ctx) == nil
		}
		n, err := snap.SnapshotDisks(ctx, ovs)
		if wasRunning {
			d.inst.Resume(context.Background())
		}
		if err != nil {
			// Disks already switched stay on their overlays (the guest
			// writes there now): record those, remove the rest.
			for _, p := range plans[n:] {
				os.Remove(p.overlay)
			}
			for _, p := range plans {
				os.Remove(p.cloneTo)
			}
			if n > 0 {
				m.useOverlays(ctx, d, plans[:n])
			}
			return api.Domain{}, fmt.Errorf("snapshotting %s's disks: %w", src, err)
		}
	}
	for _, p := range plans {
		spec.Disks[p.idx].Target = p.cloneTo
		spec.Disks[p.idx].Format = "qcow2"
	}
	if len(plans) > 0 {
		if err := m.useOverlays(ctx, d, plans); err != nil {
			for _, p := range plans {
				os.Remove(p.cloneTo)
			}
			return api.Domain{}, err
		}
	}
	d.mu.Unlock()
	locked = false
	accel, err := m.validate(&spec)
	if err == nil {
		var v api.Domain
		if v, err = m.create(ctx, spec, accel, startOpts{paused: paused}); err == nil {
			m.o.Log.Info("domain cloned", "from", src, "name", newName, "disks", len(plans))
			return v, nil
		}
	}
	for _, p := range plans {
		os.Remove(p.cloneTo)
	}
	return api.Domain{}, err
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
// and MACs (and tap names) of its own.
func cloneSpec(src api.DomainSpec, name string) api.DomainSpec {
	s := src
	s.Name = name
	s.UUID = ""
	s.Disks = append([]api.Disk(nil), src.Disks...)
	s.Vifs = append([]api.Vif(nil), src.Vifs...)
	for i := range s.Vifs {
		s.Vifs[i].MAC = config.GenerateMAC(name, i)
		s.Vifs[i].VifName = ""
	}
	return s
}
