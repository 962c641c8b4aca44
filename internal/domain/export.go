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
	"sync"
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
// of one instant by the engine (copy-before-write), a stopped one's
// images are flattened with qemu-img, each into a scratch file that has
// no name (storage.ScratchFile) beside the archive.
func (m *Manager) Export(ctx context.Context, name, path string, progress func(api.JobProgress)) (api.ExportResult, error) {
	x := &exporter{path: path, scratchDir: filepath.Dir(path)}
	return m.export(ctx, name, x, progress)
}

// ExportTo is Export streamed to w (a remote client's download): the
// archive is never a file on this host; the disks' copies are unnamed
// scratch files in scratchDir.
func (m *Manager) ExportTo(ctx context.Context, name string, w io.Writer, scratchDir string, progress func(api.JobProgress)) (api.ExportResult, error) {
	x := &exporter{out: &countingWriter{w: w}, scratchDir: scratchDir}
	return m.export(ctx, name, x, progress)
}

func (m *Manager) export(ctx context.Context, name string, x *exporter, progress func(api.JobProgress)) (api.ExportResult, error) {
	d, err := m.get(name)
	if err != nil {
		return api.ExportResult{}, err
	}
	x.m, x.d, x.progress, x.t0, x.r = m, d, progress, time.Now(), revert.New()
	defer x.r.Fail()
	defer x.closeScratch()
	for _, step := range []func(context.Context) error{x.open, x.copyDisks, x.writeArchive} {
		if err := step(ctx); err != nil {
			return api.ExportResult{}, err
		}
	}
	x.r.Success()
	res := api.ExportResult{Path: x.path, InputBytes: x.total, Ms: time.Since(x.t0).Milliseconds()}
	if x.out != nil {
		res.Bytes = x.out.n
	} else if fi, err := os.Stat(x.path); err == nil {
		res.Bytes = fi.Size()
	}
	m.o.Log.Info("domain exported", "name", name, "path", x.path, "bytes", res.Bytes)
	return res, nil
}

// exporter is one export; its methods are the steps in the order they
// run, and r undoes the archive if a later step fails.
type exporter struct {
	m          *Manager
	d          *dom
	path       string          // the archive's file ("" when streamed)
	out        *countingWriter // the stream (nil: to path)
	scratchDir string
	progress   func(api.JobProgress)
	t0         time.Time
	r          *revert.Reverter

	aw    *storage.ArchiveWriter
	spec  api.DomainSpec // the domain's spec, rewritten to the archive's paths
	jobs  []copyJob
	total int64
}

// copyJob is one disk flattened to a raw scratch file.
type copyJob struct {
	idx         int
	src, member string
	f           *os.File // the copy: a scratch file with no name
}

// countingWriter counts what a streamed archive sent.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (x *exporter) report(phase string, done, total int64) {
	if x.progress != nil {
		x.progress(api.JobProgress{Phase: phase, Done: done, Total: total})
	}
}

// open creates the archive (removed unless the export finishes), or
// starts the stream.
func (x *exporter) open(context.Context) error {
	var aw *storage.ArchiveWriter
	var err error
	if x.out != nil {
		aw, err = storage.StreamArchive(x.out)
	} else {
		aw, err = storage.CreateArchive(x.path)
	}
	if err != nil {
		return err
	}
	x.aw = aw
	x.r.Add(aw.Abort)
	return nil
}

// closeScratch gives the disks' copies back.
func (x *exporter) closeScratch() {
	for _, j := range x.jobs {
		if j.f != nil {
			j.f.Close()
		}
	}
}

// copyDisks copies every disk to scratch: a running domain's all as of
// one instant by its engine, a stopped one's with qemu-img.
func (x *exporter) copyDisks(ctx context.Context) error {
	x.d.mu.Lock()
	x.spec = x.d.rec.Spec
	x.spec.Disks = append([]api.Disk(nil), x.spec.Disks...)
	inst := x.d.inst
	for i, dk := range x.spec.Disks {
		if dk.Target == "" {
			continue
		}
		f, err := storage.ScratchFile(x.scratchDir)
		if err != nil {
			x.d.mu.Unlock()
			return err
		}
		x.jobs = append(x.jobs, copyJob{idx: i, src: dk.Target, member: "disks/" + dk.Guest + ".raw", f: f})
	}
	if inst != nil && len(x.jobs) > 0 {
		defer x.d.mu.Unlock()
		return x.backupRunning(ctx, inst)
	}
	x.d.mu.Unlock()
	for _, j := range x.jobs {
		dk := x.spec.Disks[j.idx]
		size, err := storage.VirtualSize(j.src, dk.Format)
		if err == nil {
			err = storage.ConvertToRawFile(ctx, j.src, dk.Format, size, j.f)
		}
		if err != nil {
			return fmt.Errorf("copying disk %s: %w", dk.Guest, err)
		}
	}
	return nil
}

// backupRunning has the engine copy a running domain's disks (into the
// scratch files, through their /proc/self/fd names). Caller holds the
// domain's lock.
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
			err = j.f.Truncate(size)
		}
		if err != nil {
			return fmt.Errorf("disk %s: %w", dk.Guest, err)
		}
		targets = append(targets, engine.BackupTarget{Disk: dk.Guest, Path: fmt.Sprintf("/proc/self/fd/%d", j.f.Fd())})
	}
	// Frozen through the guest agent until the copy's instant is taken
	// (the first progress report comes once the backup jobs run:
	// copy-before-write keeps that instant), so it is
	// application-consistent.
	var once sync.Once
	thaw := x.m.freezeGuest(ctx, x.d, x.spec.Name)
	defer once.Do(thaw)
	return bk.BackupDisks(ctx, targets, func(done, total int64) {
		once.Do(thaw)
		x.report("copying disks", done, total)
	})
}

// writeArchive adds boot files and disks, then the domain file and the
// manifest.
func (x *exporter) writeArchive(ctx context.Context) error {
	type member struct {
		name string
		f    *os.File
	}
	var members []member
	defer func() {
		for _, mb := range members {
			mb.f.Close()
		}
	}()
	for _, p := range []*string{&x.spec.Kernel, &x.spec.Ramdisk} {
		if *p == "" {
			continue
		}
		f, err := os.Open(*p)
		if err != nil {
			return err
		}
		members = append(members, member{"boot/" + filepath.Base(*p), f})
		*p = "boot/" + filepath.Base(*p)
	}
	for _, j := range x.jobs {
		// A second descriptor: the member's reads start at 0, and the
		// job's own is closed by closeScratch.
		f, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", j.f.Fd()))
		if err != nil {
			return err
		}
		members = append(members, member{j.member, f})
		x.spec.Disks[j.idx].Target, x.spec.Disks[j.idx].Format = j.member, "raw"
	}
	sizes := make([]int64, len(members))
	for i, mb := range members {
		fi, err := mb.f.Stat()
		if err != nil {
			return err
		}
		sizes[i] = fi.Size()
		x.total += fi.Size()
	}
	x.aw.Progress = func(done int64) { x.report("writing the archive", done, x.total) }
	for i, mb := range members {
		if err := x.aw.Add(mb.name, sizes[i], storage.CtxReader(ctx, mb.f)); err != nil {
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

// Import unpacks an archive made by Export and creates the domain from
// it, with its files in dir (default STATE/imports/NAME). The archive is
// checked whole (every member's SHA-256) before anything is put in place:
// a corrupt or truncated archive changes nothing.
func (m *Manager) Import(ctx context.Context, req api.ImportRequest, progress func(api.JobProgress)) (api.Domain, error) {
	return m.ImportFrom(ctx, nil, req, progress)
}

// ImportFrom is Import of the archive read from src (an upload the
// daemon holds unnamed; nil: the file req.Path). A cancel (ctx) stops
// it part-way, leaving nothing.
func (m *Manager) ImportFrom(ctx context.Context, src io.Reader, req api.ImportRequest, progress func(api.JobProgress)) (_ api.Domain, err error) {
	im := &importer{m: m, ctx: ctx, src: src, req: req, progress: progress, r: revert.New()}
	defer func() { m.after(m.about(ctx, im.spec.Name), api.EvCreated, "import", &err) }()
	defer im.r.Fail()
	defer func() {
		if im.scratch != "" {
			os.RemoveAll(im.scratch) // gone once renamed into place
		}
	}()
	for _, step := range []func() error{im.checkPaths, im.unpack, im.claim, im.checkQuota, im.place, im.writeConfig} {
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
	ctx      context.Context
	src      io.Reader // the archive (nil: the file req.Path)
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
	if im.src == nil && !filepath.IsAbs(im.req.Path) {
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
	progress := func(done int64) {
		if im.progress != nil {
			im.progress(api.JobProgress{Phase: "reading and checking the archive", Done: done})
		}
	}
	var man storage.Manifest
	var err error
	if im.src != nil {
		man, err = storage.UnpackFrom(im.ctx, im.src, "the uploaded archive", im.scratch, progress)
	} else {
		man, err = storage.Unpack(im.ctx, im.req.Path, im.scratch, progress)
	}
	if err != nil {
		return err
	}
	im.man, im.spec = man, man.Spec
	// A copy of a domain made from an image boots the archive's disks
	// (its cloud-init seed among them, so the guest keeps its
	// configuration): it is not made from the image again.
	im.spec.Provision = nil
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

// claim refuses the archive's name when another host of the cluster has
// it (before anything is put in place).
func (im *importer) claim() error { return im.m.claim(im.ctx, im.spec.Name) }

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
		return api.Domain{Spec: spec.Shown(), State: api.StateShutdown, Flags: Flags(api.StateShutdown),
			LastReason: "imported, not started: `ringfence create " + im.cfg + "` starts it"}, nil
	}
	out, err := im.m.Create(ctx, api.CreateRequest{Spec: spec, Paused: im.req.Paused, Tenant: im.req.Tenant})
	if err != nil {
		return api.Domain{}, err
	}
	im.m.o.Log.Info("domain imported", "name", spec.Name, "from", path)
	return out.(api.Domain), nil
}
