package domain

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/config"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/revert"
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
	d, err := m.get(name)
	if err != nil {
		return api.ExportResult{}, err
	}
	x := &exporter{m: m, d: d, path: path, progress: progress, t0: time.Now(), r: revert.New()}
	defer x.r.Fail()
	defer func() {
		if x.scratch != "" {
			os.RemoveAll(x.scratch)
		}
	}()
	for _, step := range []func(context.Context) error{x.open, x.copyDisks, x.writeArchive} {
		if err := step(ctx); err != nil {
			return api.ExportResult{}, err
		}
	}
	x.r.Success()
	fi, _ := os.Stat(path)
	res := api.ExportResult{Path: path, Bytes: fi.Size(), InputBytes: x.total, Ms: time.Since(x.t0).Milliseconds()}
	m.o.Log.Info("domain exported", "name", name, "path", path, "bytes", res.Bytes)
	return res, nil
}

// exporter is one export; its methods are the steps in the order they
// run, and r undoes the archive if a later step fails.
type exporter struct {
	m        *Manager
	d        *dom
	path     string
	progress func(api.JobProgress)
	t0       time.Time
	r        *revert.Reverter

	aw      *storage.ArchiveWriter
	scratch string
	spec    api.DomainSpec // the domain's spec, rewritten to the archive's paths
	jobs    []copyJob
	total   int64
}

// copyJob is one disk flattened to a raw scratch file.
type copyJob struct {
	idx              int
	src, dst, member string
}

func (x *exporter) report(phase string, done, total int64) {
	if x.progress != nil {
		x.progress(api.JobProgress{Phase: phase, Done: done, Total: total})
	}
}

// open creates the archive (removed unless the export finishes) and a
// scratch dir beside it (removed when Export returns).
func (x *exporter) open(context.Context) error {
	aw, err := storage.CreateArchive(x.path)
	if err != nil {
		return err
	}
	x.aw = aw
	x.r.Add(aw.Abort)
	x.scratch, err = os.MkdirTemp(filepath.Dir(x.path), ".ringfence-export-")
	if err != nil {
		return err
	}
	return nil
}

// copyDisks copies every disk to scratch: a running domain's all as of
// one instant by its engine, a stopped one's with qemu-img.
func (x *exporter) copyDisks(ctx context.Context) error {
	x.d.mu.Lock()
	x.spec = x.d.rec.Spec
	x.spec.Disks = append([]api.Disk(nil), x.spec.Disks...)
	inst := x.d.inst
	for i, dk := range x.spec.Disks {
		if dk.Target != "" {
			x.jobs = append(x.jobs, copyJob{idx: i, src: dk.Target, dst: filepath.Join(x.scratch, dk.Guest+".raw"), member: "disks/" + dk.Guest + ".raw"})
		}
	}
	if inst != nil && len(x.jobs) > 0 {
		defer x.d.mu.Unlock()
		return x.backupRunning(ctx, inst)
	}
	x.d.mu.Unlock()
	for _, j := range x.jobs {
		if err := storage.ConvertToRaw(ctx, j.src, x.spec.Disks[j.idx].Format, j.dst); err != nil {
			return fmt.Errorf("copying disk %s: %w", x.spec.Disks[j.idx].Guest, err)
		}
	}
	return nil
}

// backupRunning has the engine copy a running domain's disks. Caller
// holds the domain's lock.
func (x *exporter) backupRunning(ctx context.Context, inst engine.Instance) error {
	bk, ok := inst.(engine.DiskBackup)
	if !ok {
		return api.Errorf(api.ErrUnavailable, "this engine cannot copy a running domain's disks")
	}
	var targets []engine.BackupTarget
	for _, j := range x.jobs {
		dk := x.spec.Disks[j.idx]
		size, err := storage.VirtualSize(j.src, dk.Format)
		if err == nil {
			err = storage.CreateImage(j.dst, "raw", size)
		}
		if err != nil {
			return fmt.Errorf("disk %s: %w", dk.Guest, err)
		}
		targets = append(targets, engine.BackupTarget{Disk: dk.Guest, Path: j.dst})
	}
	return bk.BackupDisks(ctx, targets, func(done, total int64) { x.report("copying disks", done, total) })
}

// writeArchive adds boot files and disks, then the domain file and the
// manifest.
func (x *exporter) writeArchive(ctx context.Context) error {
	type member struct{ name, path string }
	var members []member
	for _, f := range []*string{&x.spec.Kernel, &x.spec.Ramdisk} {
		if *f != "" {
			members = append(members, member{"boot/" + filepath.Base(*f), *f})
			*f = "boot/" + filepath.Base(*f)
		}
	}
	for _, j := range x.jobs {
		members = append(members, member{j.member, j.dst})
		x.spec.Disks[j.idx].Target, x.spec.Disks[j.idx].Format = j.member, "raw"
	}
	for _, mb := range members {
		if fi, err := os.Stat(mb.path); err == nil {
			x.total += fi.Size()
		}
	}
	x.aw.Progress = func(done int64) { x.report("writing the archive", done, x.total) }
	for _, mb := range members {
		if err := addFile(ctx, x.aw, mb.name, mb.path); err != nil {
			return err
		}
	}
	cfg := config.Format(x.spec)
	if err := x.aw.Add("domain.cfg", int64(len(cfg)), strings.NewReader(cfg)); err != nil {
		return err
	}
	host, _ := os.Hostname()
	return x.aw.Close(storage.Manifest{Created: time.Now().UTC(), Host: host, Spec: x.spec})
}

// addFile adds the file at path to an archive as member name.
func addFile(ctx context.Context, aw *storage.ArchiveWriter, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return aw.Add(name, fi.Size(), ctxReader{ctx, f})
}

// ctxReader stops a copy once ctx is done (a cancelled export).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Import unpacks an archive made by Export and creates the domain from
// it, with its files in dir (default STATE/imports/NAME). The archive is
// checked whole (every member's SHA-256) before anything is put in place:
// a corrupt or truncated archive changes nothing.
func (m *Manager) Import(ctx context.Context, req api.ImportRequest, progress func(api.JobProgress)) (_ api.Domain, err error) {
	im := &importer{m: m, req: req, progress: progress, r: revert.New()}
	defer func() { m.after(m.about(ctx, im.spec.Name), api.EvCreated, "import", &err) }()
	defer im.r.Fail()
	defer func() {
		if im.scratch != "" {
			os.RemoveAll(im.scratch) // gone once renamed into place
		}
	}()
	for _, step := range []func() error{im.checkPaths, im.unpack, im.checkQuota, im.place, im.writeConfig} {
		if err := step(); err != nil {
			return api.Domain{}, err
		}
	}
	out, err := im.start(ctx)
	if err != nil {
		return api.Domain{}, err
	}
	im.r.Success()
	return out, nil
}

// importer is one import; its methods are the steps in the order they
// run, and r removes what was put in place if a later step fails.
type importer struct {
	m        *Manager
	req      api.ImportRequest
	progress func(api.JobProgress)
	r        *revert.Reverter

	dir, scratch, home, cfg string
	man                     storage.Manifest
	spec                    api.DomainSpec
}

// checkPaths checks the archive and target paths and makes the target.
func (im *importer) checkPaths() error {
	im.dir = im.req.Dir
	if !filepath.IsAbs(im.req.Path) {
		return api.Errorf(api.ErrInvalid, "archive %q must be an absolute path", im.req.Path)
	}
	if im.dir == "" {
		im.dir = filepath.Join(im.m.o.StateDir, "imports")
	}
	if !filepath.IsAbs(im.dir) {
		return api.Errorf(api.ErrInvalid, "directory %q must be an absolute path", im.dir)
	}
	if t := im.req.Tenant; t != "" {
		// Its files become the tenant's disks: they go into its pools.
		if err := im.m.tenantFile(t, "import directory", im.dir, true); err != nil {
			if im.req.Dir == "" {
				return api.Errorf(api.ErrInvalid, "a domain of tenant %s is imported into one of its pools: give --dir, a directory in one (see `ringfence pool list`)", t)
			}
			return err
		}
	}
	if err := im.m.o.Policy.Check(storage.UseNew, im.dir); err != nil {
		return err
	}
	return os.MkdirAll(im.dir, 0o700)
}

// unpack reads and checks the whole archive into a scratch dir, and
// names the domain (--name gives it a new name and new MACs).
func (im *importer) unpack() error {
	rb := make([]byte, 6)
	rand.Read(rb)
	im.scratch = filepath.Join(im.dir, ".import-"+hex.EncodeToString(rb))
	man, err := storage.Unpack(im.req.Path, im.scratch, func(done int64) {
		if im.progress != nil {
			im.progress(api.JobProgress{Phase: "reading and checking the archive", Done: done})
		}
	})
	if err != nil {
		return err
	}
	im.man, im.spec = man, man.Spec
	if rename := im.req.Name; rename != "" {
		im.spec.Name, im.spec.UUID = rename, ""
		for i := range im.spec.Vifs {
			im.spec.Vifs[i].MAC, im.spec.Vifs[i].VifName = domspec.GenerateMAC(rename, i), ""
		}
	}
	if _, err := im.m.get(im.spec.Name); err == nil {
		return api.Errorf(api.ErrConflict, "a domain named %q already exists here; import with --name NEW", im.spec.Name)
	}
	if err := domspec.ValidName(im.spec.Name); err != nil {
		return api.Errorf(api.ErrInvalid, "the archive's domain: %v", err)
	}
	return nil
}

// checkQuota checks the tenant's disk quota for the archive's writable
// disks (flat raw images: their size is their virtual size).
func (im *importer) checkQuota() error {
	if im.req.Tenant == "" || im.m.o.Tenancy == nil {
		return nil
	}
	sizes := map[string]int64{}
	for _, mb := range im.man.Members {
		sizes[mb.Name] = mb.Size
	}
	var add int64
	for _, dk := range im.spec.Disks {
		if !dk.CDROM && dk.Access != "ro" {
			add += sizes[dk.Target]
		}
	}
	return im.m.o.Tenancy.CheckDisk(context.Background(), im.req.Tenant, add, "the import of "+im.spec.Name)
}

// place moves the unpacked files to the domain's home and points the
// spec at them: only the archive's own members (checked against the
// manifest), nothing outside the imported directory.
func (im *importer) place() error {
	home := filepath.Join(im.dir, im.spec.Name)
	if _, err := os.Lstat(home); err == nil {
		return api.Errorf(api.ErrConflict, "%s already exists; remove it or import into another --dir", home)
	}
	if err := os.Rename(im.scratch, home); err != nil {
		return err
	}
	im.home, im.scratch = home, ""
	im.r.Add(func() { os.RemoveAll(home) })
	members := map[string]bool{}
	for _, mb := range im.man.Members {
		members[mb.Name] = true
	}
	var bad string
	abs := func(member string) string {
		if member == "" {
			return ""
		}
		if !members[member] || filepath.IsAbs(member) || filepath.Clean(member) != member || strings.HasPrefix(member, "..") {
			bad = member
		}
		return filepath.Join(home, member)
	}
	im.spec.Kernel, im.spec.Ramdisk = abs(im.spec.Kernel), abs(im.spec.Ramdisk)
	for i := range im.spec.Disks {
		im.spec.Disks[i].Target = abs(im.spec.Disks[i].Target)
	}
	if bad != "" {
		return api.Errorf(api.ErrInvalid, "the archive's domain names %q, which is not one of its members: a damaged or crafted archive", bad)
	}
	return nil
}

// writeConfig writes its domain file, as `create` takes it: absolute
// paths to the files just put in place.
func (im *importer) writeConfig() error {
	im.cfg = filepath.Join(im.home, "domain.cfg")
	return safefile.WriteFile(im.cfg, []byte(config.Format(im.spec)), 0o600)
}

// start creates the domain, or with --no-start checks that it could.
func (im *importer) start(ctx context.Context) (api.Domain, error) {
	spec, path := im.spec, im.req.Path
	if im.req.NoStart {
		if _, err := im.m.validate(&spec, im.req.Tenant); err != nil {
			return api.Domain{}, err
		}
		im.m.o.Log.Info("domain imported, not started", "name", spec.Name, "from", path, "config", im.cfg)
		return api.Domain{Spec: spec, State: api.StateShutdown, Flags: Flags(api.StateShutdown),
			LastReason: "imported, not started: `ringfence create " + im.cfg + "` starts it"}, nil
	}
	out, err := im.m.Create(ctx, api.CreateRequest{Spec: spec, Paused: im.req.Paused, Tenant: im.req.Tenant})
	if err != nil {
		return api.Domain{}, err
	}
	im.m.o.Log.Info("domain imported", "name", spec.Name, "from", path)
	return out.(api.Domain), nil
}
