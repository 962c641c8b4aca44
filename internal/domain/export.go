package domain

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/config"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/safefile"
	domspec "github.com/ringfence/ringfence/internal/spec"
	"github.com/ringfence/ringfence/internal/storage"
)

// Export writes domain name to one archive at path (internal/storage's
// format): the domain file, its kernel and ramdisk, and every disk as a
// flat raw image. A running domain keeps running: its disks are copied as
// of one instant by the engine (copy-before-write) into scratch files
// beside the archive, which are removed afterwards; a stopped one's images
// are flattened with qemu-img (clones and snapshots included).
func (m *Manager) Export(ctx context.Context, name, path string, progress func(api.JobProgress)) (api.ExportResult, error) {
	var res api.ExportResult
	t0 := time.Now()
	d, err := m.get(name)
	if err != nil {
		return res, err
	}
	aw, err := storage.CreateArchive(path)
	if err != nil {
		return res, err
	}
	ok := false
	defer func() {
		if !ok {
			aw.Abort()
		}
	}()
	scratch, err := os.MkdirTemp(filepath.Dir(path), ".ringfence-export-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(scratch)

	d.mu.Lock()
	spec := d.rec.Spec
	spec.Disks = append([]api.Disk(nil), spec.Disks...)
	inst := d.inst
	type copyJob struct {
		idx              int
		src, dst, member string
	}
	var jobs []copyJob
	for i, dk := range spec.Disks {
		if dk.Target == "" {
			continue
		}
		jobs = append(jobs, copyJob{idx: i, src: dk.Target, dst: filepath.Join(scratch, dk.Guest+".raw"), member: "disks/" + dk.Guest + ".raw"})
	}
	// Scratch copies, all as of one instant.
	if inst != nil && len(jobs) > 0 {
		bk, okb := inst.(engine.DiskBackup)
		if !okb {
			d.mu.Unlock()
			return res, api.Errorf(api.ErrUnavailable, "this engine cannot copy a running domain's disks")
		}
		var targets []engine.BackupTarget
		for _, j := range jobs {
			size, err := storage.VirtualSize(j.src, spec.Disks[j.idx].Format)
			if err == nil {
				err = storage.CreateImage(j.dst, "raw", size)
			}
			if err != nil {
				d.mu.Unlock()
				return res, fmt.Errorf("disk %s: %w", spec.Disks[j.idx].Guest, err)
			}
			targets = append(targets, engine.BackupTarget{Disk: spec.Disks[j.idx].Guest, Path: j.dst})
		}
		err := bk.BackupDisks(ctx, targets, func(done, total int64) {
			if progress != nil {
				progress(api.JobProgress{Phase: "copying disks", Done: done, Total: total})
			}
		})
		d.mu.Unlock()
		if err != nil {
			return res, err
		}
	} else {
		d.mu.Unlock()
		for _, j := range jobs {
			if err := storage.ConvertToRaw(ctx, j.src, spec.Disks[j.idx].Format, j.dst); err != nil {
				return res, fmt.Errorf("copying disk %s: %w", spec.Disks[j.idx].Guest, err)
			}
		}
	}

	// The archive: boot files, disks, then the domain file and manifest.
	type member struct{ name, path string }
	var members []member
	if spec.Kernel != "" {
		members = append(members, member{"boot/" + filepath.Base(spec.Kernel), spec.Kernel})
		spec.Kernel = "boot/" + filepath.Base(spec.Kernel)
	}
	if spec.Ramdisk != "" {
		members = append(members, member{"boot/" + filepath.Base(spec.Ramdisk), spec.Ramdisk})
		spec.Ramdisk = "boot/" + filepath.Base(spec.Ramdisk)
	}
	for _, j := range jobs {
		members = append(members, member{j.member, j.dst})
		spec.Disks[j.idx].Target, spec.Disks[j.idx].Format = j.member, "raw"
	}
	var total int64
	for _, mb := range members {
		if fi, err := os.Stat(mb.path); err == nil {
			total += fi.Size()
		}
	}
	aw.Progress = func(done int64) {
		if progress != nil {
			progress(api.JobProgress{Phase: "writing the archive", Done: done, Total: total})
		}
	}
	for _, mb := range members {
		f, err := os.Open(mb.path)
		if err != nil {
			return res, err
		}
		fi, _ := f.Stat()
		err = aw.Add(mb.name, fi.Size(), f)
		f.Close()
		if err != nil {
			return res, err
		}
	}
	cfg := []byte(config.Format(spec))
	if err := aw.Add("domain.cfg", int64(len(cfg)), strings.NewReader(string(cfg))); err != nil {
		return res, err
	}
	host, _ := os.Hostname()
	if err := aw.Close(storage.Manifest{Created: time.Now().UTC(), Host: host, Spec: spec}); err != nil {
		return res, err
	}
	ok = true
	fi, _ := os.Stat(path)
	res = api.ExportResult{Path: path, Bytes: fi.Size(), InputBytes: total, Ms: time.Since(t0).Milliseconds()}
	m.o.Log.Info("domain exported", "name", name, "path", path, "bytes", res.Bytes)
	return res, nil
}

// Import unpacks an archive made by Export and creates the domain from
// it, with its files in dir (default STATE/imports/NAME). The archive is
// checked whole (every member's SHA-256) before anything is put in place:
// a corrupt or truncated archive changes nothing.
func (m *Manager) Import(ctx context.Context, req api.ImportRequest, progress func(api.JobProgress)) (api.Domain, error) {
	path, dir, rename := req.Path, req.Dir, req.Name
	if !filepath.IsAbs(path) {
		return api.Domain{}, api.Errorf(api.ErrInvalid, "archive %q must be an absolute path", path)
	}
	if dir == "" {
		dir = filepath.Join(m.o.StateDir, "imports")
	}
	if !filepath.IsAbs(dir) {
		return api.Domain{}, api.Errorf(api.ErrInvalid, "directory %q must be an absolute path", dir)
	}
	if err := m.o.Policy.Check(storage.UseNew, dir); err != nil {
		return api.Domain{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return api.Domain{}, err
	}
	rb := make([]byte, 6)
	rand.Read(rb)
	scratch := filepath.Join(dir, ".import-"+hex.EncodeToString(rb))
	defer os.RemoveAll(scratch)
	man, err := storage.Unpack(path, scratch, func(done int64) {
		if progress != nil {
			progress(api.JobProgress{Phase: "reading and checking the archive", Done: done})
		}
	})
	if err != nil {
		return api.Domain{}, err
	}
	spec := man.Spec
	if rename != "" {
		spec.Name, spec.UUID = rename, ""
		for i := range spec.Vifs {
			spec.Vifs[i].MAC, spec.Vifs[i].VifName = domspec.GenerateMAC(rename, i), ""
		}
	}
	if _, err := m.get(spec.Name); err == nil {
		return api.Domain{}, api.Errorf(api.ErrConflict, "a domain named %q already exists here; import with --name NEW", spec.Name)
	}
	if err := domspec.ValidName(spec.Name); err != nil {
		return api.Domain{}, api.Errorf(api.ErrInvalid, "the archive's domain: %v", err)
	}
	home := filepath.Join(dir, spec.Name)
	if _, err := os.Lstat(home); err == nil {
		return api.Domain{}, api.Errorf(api.ErrConflict, "%s already exists; remove it or import into another --dir", home)
	}
	if err := os.Rename(scratch, home); err != nil {
		return api.Domain{}, err
	}
	// The spec names the archive's own members (checked against the
	// manifest): nothing outside the imported directory.
	members := map[string]bool{}
	for _, mb := range man.Members {
		members[mb.Name] = true
	}
	var bad string
	abs := func(member string) string {
		if !members[member] || filepath.IsAbs(member) || filepath.Clean(member) != member || strings.HasPrefix(member, "..") {
			bad = member
		}
		return filepath.Join(home, member)
	}
	if spec.Kernel != "" {
		spec.Kernel = abs(spec.Kernel)
	}
	if spec.Ramdisk != "" {
		spec.Ramdisk = abs(spec.Ramdisk)
	}
	for i := range spec.Disks {
		if spec.Disks[i].Target != "" {
			spec.Disks[i].Target = abs(spec.Disks[i].Target)
		}
	}
	if bad != "" {
		os.RemoveAll(home)
		return api.Domain{}, api.Errorf(api.ErrInvalid, "the archive's domain names %q, which is not one of its members: a damaged or crafted archive", bad)
	}
	// Its domain file, as `create` takes it: absolute paths to the files
	// just put in place.
	cfg := filepath.Join(home, "domain.cfg")
	if err := safefile.WriteFile(cfg, []byte(config.Format(spec)), 0o600); err != nil {
		os.RemoveAll(home)
		return api.Domain{}, err
	}
	if req.NoStart {
		if _, err := m.validate(&spec); err != nil {
			os.RemoveAll(home)
			return api.Domain{}, err
		}
		m.o.Log.Info("domain imported, not started", "name", spec.Name, "from", path, "config", cfg)
		return api.Domain{Spec: spec, State: api.StateShutdown, Flags: Flags(api.StateShutdown),
			LastReason: "imported, not started: `ringfence create " + cfg + "` starts it"}, nil
	}
	out, err := m.Create(ctx, api.CreateRequest{Spec: spec, Paused: req.Paused})
	if err != nil {
		os.RemoveAll(home)
		return api.Domain{}, err
	}
	m.o.Log.Info("domain imported", "name", spec.Name, "from", path)
	return out.(api.Domain), nil
}
