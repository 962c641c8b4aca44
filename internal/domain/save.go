package domain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/safefile"
	"github.com/ringfence/ringfence/internal/saveimage"
	domspec "github.com/ringfence/ringfence/internal/spec"
	"github.com/ringfence/ringfence/internal/storage"
)

// A save file is a saveimage (internal/saveimage): the header with the
// domain spec, QEMU's migration stream, a trailer with its length and
// SHA-256. Restore checks all of it before it starts anything, so a
// truncated, corrupted or foreign file is refused with nothing created.
type saveHeader = saveimage.Header

// Save writes a domain's state to path. Without checkpoint the domain is
// gone afterwards (xl save); with it, it keeps running (xl save -c).
func (m *Manager) Save(ctx context.Context, name, path string, checkpoint bool) (err error) {
	defer m.after(m.about(ctx, name), api.EvSaved, path, &err)
	if !filepath.IsAbs(path) {
		return api.Errorf(api.ErrInvalid, "save file %q must be an absolute path", path)
	}
	return m.saveDomain(ctx, name, checkpoint, func(hdr saveHeader, mig engine.Migratable) error {
		return m.writeSave(ctx, path, hdr, mig)
	}, nil)
}

// SaveTo writes a domain's save image to w (a remote client's file,
// streamed). With checkpoint the domain resumes at once. Without, it
// stays paused, and locked, until confirmed returns: nil (the client
// holds a checked copy) ends it; an error (no confirmation in time, the
// client gone) resumes it, so a save whose image never arrived never
// loses the guest.
func (m *Manager) SaveTo(ctx context.Context, name string, w io.Writer, checkpoint bool, confirmed func() error) (err error) {
	defer m.after(m.about(ctx, name), api.EvSaved, "streamed to the client", &err)
	return m.saveDomain(ctx, name, checkpoint, func(hdr saveHeader, mig engine.Migratable) error {
		return streamSave(ctx, w, hdr, mig)
	}, confirmed)
}

// saveDomain is Save and SaveTo: write (the image, wherever it goes) with the
// domain locked, then resume it (checkpoint, or not confirmed) or end it.
func (m *Manager) saveDomain(ctx context.Context, name string, checkpoint bool, write func(saveHeader, engine.Migratable) error, confirmed func() error) error {
	d, err := m.lockRunning(name)
	if err != nil {
		return err
	}
	inst := d.inst
	mig, ok := inst.(engine.Migratable)
	if !ok {
		d.mu.Unlock()
		return api.Errorf(api.ErrUnavailable, "this engine cannot save domains")
	}
	hdr := saveHeader{Spec: d.rec.Spec, Accel: d.rec.Accel, SavedAt: time.Now().UTC(), Tenant: d.tenant, Usage: m.readTotals(ctx, d)}
	hdr.Host, _ = os.Hostname()
	if err := write(hdr, mig); err != nil {
		d.mu.Unlock()
		// QEMU resumes the guest itself when a migration fails.
		return fmt.Errorf("saving %s: %w", name, err)
	}
	if !checkpoint && confirmed != nil {
		if err := confirmed(); err != nil {
			rerr := inst.Resume(context.WithoutCancel(ctx))
			d.mu.Unlock()
			return errors.Join(fmt.Errorf("saving %s: %w; the domain runs on", name, err), rerr)
		}
	}
	if checkpoint {
		err := inst.Resume(ctx)
		d.mu.Unlock()
		return err
	}
	d.endWhy = "saved"
	d.mu.Unlock()
	return m.Destroy(ctx, name)
}

// writeSave writes the image to a new root-only file beside path,
// renamed over it at the end: nothing already at the path (a symlink,
// someone's file) is followed or reused, and the guest's RAM is never
// readable by anyone else.
func (m *Manager) writeSave(ctx context.Context, path string, hdr saveHeader, mig engine.Migratable) error {
	f, err := safefile.Create(path)
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return storage.NoSpace("the save file", path, err)
		}
		return api.Errorf(api.ErrInvalid, "creating %s: %v", path, err)
	}
	defer f.Abort() // a no-op once committed
	if err := streamSave(ctx, f, hdr, mig); err != nil {
		// A full disk is said as such, naming the filesystem.
		return storage.NoSpace("the save file", path, fmt.Errorf("writing %s: %w", f.Name(), err))
	}
	return storage.NoSpace("the save file", path, f.Commit())
}

// streamSave writes the image to w: the header, QEMU's migration stream
// (through a pipe), the trailer.
func streamSave(ctx context.Context, w io.Writer, hdr saveHeader, mig engine.Migratable) error {
	sw, err := saveimage.Begin(w, hdr)
	if err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(sw, pr)
		pr.Close() // a failed write ends QEMU's stream too (EPIPE)
		done <- err
	}()
	_, merr := mig.MigrateTo(ctx, pw, engine.MigrateOptions{Progress: streamProgress(ctx, "saving")})
	pw.Close() // QEMU closed its copy when the stream ended
	cerr := <-done
	// The writer's error first: it is the cause (a full disk, a client
	// gone), and QEMU then only sees its stream end ("Broken pipe").
	if cerr != nil {
		return cerr
	}
	if merr != nil {
		return merr
	}
	return sw.End()
}

// openSave opens a save file and checks it completely: its header and
// where the stream lies. The caller closes the file.
func openSave(path string) (*os.File, saveHeader, int64, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, saveHeader{}, 0, 0, api.Errorf(api.ErrInvalid, "opening save file: %v", err)
	}
	hdr, start, end, err := checkSave(f, path)
	if err != nil {
		f.Close()
		return nil, hdr, 0, 0, err
	}
	return f, hdr, start, end, nil
}

// checkSave checks the save image in f (label names it in errors).
func checkSave(f *os.File, label string) (saveHeader, int64, int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return saveHeader{}, 0, 0, err
	}
	hdr, start, end, err := saveimage.Check(f, fi.Size(), label)
	if err != nil {
		return hdr, 0, 0, err
	}
	if err := domspec.Normalize(&hdr.Spec); err != nil {
		return hdr, 0, 0, api.Errorf(api.ErrInvalid, "%s is not a usable ringfence save file: the saved domain spec is invalid: %v", label, err)
	}
	return hdr, start, end, nil
}

// Restore starts a domain from a save file; paused leaves it paused. The
// domain keeps the tenant it had when saved; tenant, when set, is the
// only one the caller may restore (a tenant's principal).
func (m *Manager) Restore(ctx context.Context, path string, paused bool, tenant string) (api.Domain, error) {
	f, err := os.Open(path)
	if err != nil {
		return api.Domain{}, api.Errorf(api.ErrInvalid, "opening save file: %v", err)
	}
	defer f.Close()
	return m.RestoreFrom(ctx, f, path, paused, tenant)
}

// RestoreFrom starts a domain from the save image in f (a file, or an
// upload the daemon holds unnamed); label names it in errors and events.
// tenant is as for Restore: an image's header is what its holder says
// (an upload's is the client's), so a tenant's principal restores only
// an image that names its own tenant, and the domain draws from that
// tenant's quota.
func (m *Manager) RestoreFrom(ctx context.Context, f *os.File, label string, paused bool, tenant string) (_ api.Domain, err error) {
	hdr, start, end, err := checkSave(f, label)
	if err != nil {
		return api.Domain{}, err
	}
	if tenant != "" && hdr.Tenant != tenant {
		return api.Domain{}, api.Errorf(api.ErrInvalid, "%s holds a domain that is not tenant %s's: a tenant restores only its own domains", label, tenant)
	}
	spec := hdr.Spec
	accel, err := m.validate(&spec, hdr.Tenant)
	if err == nil {
		err = m.claim(ctx, spec.Name)
	}
	if err != nil {
		return api.Domain{}, err
	}
	incoming, err := saveIncoming(f, hdr, start, end, spec.Name, accel, label)
	if err != nil {
		return api.Domain{}, err
	}
	defer m.after(m.about(ctx, spec.Name), api.EvRestored, label, &err)
	m.seedUsage(spec.Name, hdr.Usage)
	return m.create(ctx, spec, accel, startOpts{paused: paused, incoming: incoming, kind: kindRestore, tenant: hdr.Tenant})
}

// saveLoader checks a save file (whole: magic, header, length, checksum)
// for domain name and returns what loads it into a starting QEMU.
func (m *Manager) saveLoader(path, name, accel string) (func(context.Context, engine.Migratable) error, func(), error) {
	f, hdr, start, end, err := openSave(path)
	if err != nil {
		return nil, nil, err
	}
	incoming, err := saveIncoming(f, hdr, start, end, name, accel, path)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return incoming, func() { f.Close() }, nil
}

// saveIncoming is what loads a checked image (the stream at start..end
// of f) of domain name into a starting QEMU.
func saveIncoming(f *os.File, hdr saveHeader, start, end int64, name, accel, label string) (func(context.Context, engine.Migratable) error, error) {
	if hdr.Spec.Name != name {
		return nil, api.Errorf(api.ErrInvalid, "%s holds domain %s, not %s", label, hdr.Spec.Name, name)
	}
	if hdr.Accel != accel {
		return nil, api.Errorf(api.ErrInvalid, "the domain was saved under %s and this host runs %s: its CPU state cannot be loaded", hdr.Accel, accel)
	}
	return func(ctx context.Context, mig engine.Migratable) error {
		pr, pw, err := os.Pipe()
		if err != nil {
			return err
		}
		src := &countingReader{r: io.NewSectionReader(f, start, end-start), total: end - start, phase: "loading", report: progressOf(ctx)}
		return loadStream(ctx, mig, pr, pw, src)
	}, nil
}

var errNoMigrate = errors.New("this engine cannot load saved state")
