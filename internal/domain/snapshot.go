package domain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/revert"
	"github.com/ringfence/ringfence/internal/storage"
	"github.com/ringfence/ringfence/internal/store"
)

// Snapshots are internal qcow2 snapshots, one per writable disk, under
// the snapshot's name: each disk stays one file (clones, migration and
// backups need no chain to follow), revert is by name, delete frees the
// space inside the file. With --memory the running state is saved too,
// to STATE/snapshots/DOMAIN/SNAP.state in the save-file format, taken
// while the guest is paused right after the disk snapshots, so the two
// match; revert then restores that file and the guest resumes at the
// exact moment. Records live in the store (snapshots/DOMAIN/SNAP).

const keySnapshots = "snapshots/"

type snapRecord struct {
	api.Snapshot
	StatePath string `json:"state_path,omitempty"`
}

func snapKey(dom, snap string) string { return keySnapshots + dom + "/" + snap }

// snapDisks are the disks a snapshot covers: every writable one, and all
// must be qcow2.
func snapDisks(spec api.DomainSpec) ([]api.SnapshotDisk, error) {
	var out []api.SnapshotDisk
	for _, d := range spec.Disks {
		if d.Target == "" || d.CDROM || d.Access == "ro" {
			continue
		}
		if d.Format != "qcow2" {
			return nil, api.Errorf(api.ErrInvalid, "disk %s (%s) is %s: snapshots live inside qcow2 images; convert it (qemu-img convert -O qcow2) or clone the domain (clones are qcow2)",
				d.VDev, d.Target, orRaw(d.Format))
		}
		out = append(out, api.SnapshotDisk{Guest: d.Guest, Path: d.Target})
	}
	if len(out) == 0 {
		return nil, api.Errorf(api.ErrInvalid, "%s has no writable disk to snapshot", spec.Name)
	}
	return out, nil
}

func orRaw(f string) string {
	if f == "" {
		return "raw"
	}
	return f
}

// SnapshotCreate takes snapshot snap of domain name (live when it runs).
// Disks snapshotted and memory saved are undone if a later step fails.
func (m *Manager) SnapshotCreate(ctx context.Context, name, snap string, memory bool) (api.Snapshot, error) {
	if err := storage.CheckName("snapshot", snap); err != nil {
		return api.Snapshot{}, err
	}
	d, err := m.get(name)
	if err != nil {
		return api.Snapshot{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.migrating {
		return api.Snapshot{}, api.Errorf(api.ErrConflict, "%s is being migrated", name)
	}
	if b, _ := m.o.Store.Get(ctx, snapKey(name, snap)); b != nil {
		return api.Snapshot{}, api.Errorf(api.ErrConflict, "%s already has a snapshot %s; delete it or pick another name", name, snap)
	}
	disks, err := snapDisks(d.rec.Spec)
	if err != nil {
		return api.Snapshot{}, err
	}
	rec := snapRecord{Snapshot: api.Snapshot{Name: snap, Domain: name, Created: time.Now().UTC(), Disks: disks, Memory: memory}}
	r := revert.New()
	defer r.Fail()
	if d.inst == nil {
		err = m.snapStopped(ctx, r, &rec)
	} else {
		err = m.snapRunning(ctx, r, d, &rec)
	}
	if err != nil {
		return api.Snapshot{}, err
	}
	b, _ := json.Marshal(rec)
	if err := store.Put(ctx, m.o.Store, snapKey(name, snap), b); err != nil {
		return api.Snapshot{}, err
	}
	r.Success()
	m.o.Log.Info("snapshot taken", "name", name, "snapshot", snap, "memory", memory, "disks", len(disks))
	return rec.Snapshot, nil
}

// snapStopped snapshots a stopped domain's disks with qemu-img.
func (m *Manager) snapStopped(ctx context.Context, r *revert.Reverter, rec *snapRecord) error {
	if rec.Memory {
		return api.Errorf(api.ErrConflict, "%s is not running: there is no memory to snapshot; leave out --memory", rec.Domain)
	}
	for _, dk := range rec.Disks {
		if err := storage.Snapshot("-c", rec.Name, dk.Path); err != nil {
			return err
		}
		r.Add(func() { m.dropDiskSnaps(ctx, nil, []api.SnapshotDisk{dk}, rec.Name) })
	}
	return nil
}

// snapRunning snapshots a running domain's disks (and memory) through its
// engine, paused across all of them so they agree. Caller holds d.mu.
func (m *Manager) snapRunning(ctx context.Context, r *revert.Reverter, d *dom, rec *snapRecord) error {
	is, ok := d.inst.(engine.InternalSnapshotter)
	if !ok {
		return api.Errorf(api.ErrUnavailable, "this engine cannot snapshot a running domain")
	}
	if st, err := d.inst.Status(ctx); err == nil && st == engine.RunRunning {
		// Disks only: frozen through the guest agent across the
		// snapshot (application-consistent). Not with memory: a
		// revert would resume a guest whose filesystems stay frozen.
		if !rec.Memory {
			defer m.freezeGuest(ctx, d, rec.Domain)()
		}
		if err := d.inst.Pause(ctx); err != nil {
			return err
		}
		// Resumed whatever happens. A paused VM that was saved is
		// "postmigrate": cont resumes it too.
		defer d.inst.Resume(context.Background())
	}
	for _, dk := range rec.Disks {
		if err := is.SnapshotInternal(ctx, dk.Guest, rec.Name); err != nil {
			return fmt.Errorf("snapshotting disk %s: %w", dk.Guest, err)
		}
		r.Add(func() { m.dropDiskSnaps(ctx, is, []api.SnapshotDisk{dk}, rec.Name) })
	}
	if !rec.Memory {
		return nil
	}
	mig, ok := d.inst.(engine.Migratable)
	if !ok {
		return api.Errorf(api.ErrUnavailable, "this engine cannot save memory")
	}
	dir := filepath.Join(m.o.StateDir, "snapshots", rec.Domain)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	rec.StatePath = filepath.Join(dir, rec.Name+".state")
	hdr := saveHeader{Spec: d.rec.Spec, Accel: d.rec.Accel, SavedAt: rec.Created, Tenant: d.tenant}
	hdr.Host, _ = os.Hostname()
	if err := m.writeSave(ctx, rec.StatePath, hdr, mig); err != nil {
		return fmt.Errorf("saving %s's memory: %w", rec.Domain, err)
	}
	path := rec.StatePath
	r.Add(func() { os.Remove(path) })
	return nil
}

// dropDiskSnaps deletes snap from disks: through QEMU when it has them
// open, else with qemu-img.
func (m *Manager) dropDiskSnaps(ctx context.Context, is engine.InternalSnapshotter, disks []api.SnapshotDisk, snap string) error {
	var first error
	for _, dk := range disks {
		var err error
		if is != nil {
			err = is.DeleteSnapshotInternal(ctx, dk.Guest, snap)
		} else {
			err = storage.Snapshot("-d", snap, dk.Path)
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (m *Manager) snapRecord(ctx context.Context, name, snap string) (snapRecord, error) {
	var rec snapRecord
	if err := storage.CheckName("snapshot", snap); err != nil {
		return rec, err
	}
	b, err := m.o.Store.Get(ctx, snapKey(name, snap))
	if err != nil || b == nil {
		return rec, api.Errorf(api.ErrNotFound, "%s has no snapshot %s (see `ringfence snapshot list %s`)", name, snap, name)
	}
	err = json.Unmarshal(b, &rec)
	return rec, err
}

// SnapshotList returns name's snapshots, oldest first.
func (m *Manager) SnapshotList(ctx context.Context, name string) ([]api.Snapshot, error) {
	kvs, err := m.o.Store.List(ctx, keySnapshots+name+"/")
	if err != nil {
		return nil, err
	}
	out := []api.Snapshot{}
	for _, kv := range kvs {
		var rec snapRecord
		if json.Unmarshal(kv.Value, &rec) == nil {
			out = append(out, rec.Snapshot)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// SnapshotDelete removes a snapshot from the disks and the store.
func (m *Manager) SnapshotDelete(ctx context.Context, name, snap string) error {
	rec, err := m.snapRecord(ctx, name, snap)
	if err != nil {
		return err
	}
	var is engine.InternalSnapshotter
	if d, err := m.get(name); err == nil {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.inst != nil {
			is, _ = d.inst.(engine.InternalSnapshotter)
		}
	}
	if err := m.dropDiskSnaps(ctx, is, rec.Disks, snap); err != nil {
		return fmt.Errorf("deleting snapshot %s: %w", snap, err)
	}
	if rec.StatePath != "" {
		os.Remove(rec.StatePath)
	}
	return store.Delete(ctx, m.o.Store, snapKey(name, snap))
}

// SnapshotRevert returns the domain to a snapshot. With memory, whatever
// runs now is destroyed and the saved moment resumes; a disk-only
// snapshot cannot bring back a running guest's memory, so it is refused
// while the domain runs (shut it down, revert, create it again).
func (m *Manager) SnapshotRevert(ctx context.Context, name, snap string) (api.Domain, error) {
	rec, err := m.snapRecord(ctx, name, snap)
	if err != nil {
		return api.Domain{}, err
	}
	if d, err := m.get(name); err == nil {
		running := d.snap.Load() != nil && d.snap.Load().PID != 0
		if running && !rec.Memory {
			return api.Domain{}, api.Errorf(api.ErrConflict, "%s runs and snapshot %s holds no memory: reverting its disks under a running guest would corrupt them; shut it down first (or take snapshots with --memory)", name, snap)
		}
		// Its record goes (running or kept after shutdown): the snapshot
		// replaces it.
		if err := m.Destroy(ctx, name); err != nil && !errors.Is(err, api.ErrNotFound) {
			return api.Domain{}, err
		}
	}
	for _, dk := range rec.Disks {
		if err := storage.Snapshot("-a", snap, dk.Path); err != nil {
			return api.Domain{}, fmt.Errorf("reverting disk %s: %w", dk.Guest, err)
		}
	}
	if !rec.Memory {
		return api.Domain{Spec: api.DomainSpec{Name: name}}, nil
	}
	return m.Restore(ctx, rec.StatePath, false, "")
}
