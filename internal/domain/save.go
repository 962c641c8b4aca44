package domain

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/safefile"
	domspec "github.com/ringfence/ringfence/internal/spec"
)

// A save file is: saveMagic, a 4-byte big-endian header length, the JSON
// header (the domain spec travels with its state, as in xl), QEMU's
// migration stream, and a trailer: trailerMagic, the stream's length and
// its SHA-256. Restore checks all of it before it starts anything, so a
// truncated, corrupted or foreign file is refused with nothing created.
const (
	saveMagic    = "RINGFENCE-SAVE-1\n"
	trailerMagic = "RFSAVEND"
	trailerLen   = len(trailerMagic) + 8 + sha256.Size
)

type saveHeader struct {
	Spec    api.DomainSpec `json:"spec"`
	Accel   string         `json:"accel"`
	SavedAt time.Time      `json:"saved_at"`
	Host    string         `json:"host"`
	// Tenant owned the domain ("" = the host): a restore keeps it.
	Tenant string `json:"tenant,omitempty"`
}

// Save writes a domain's state to path. Without checkpoint the domain is
// gone afterwards (xl save); with it, it keeps running (xl save -c).
func (m *Manager) Save(ctx context.Context, name, path string, checkpoint bool) (err error) {
	defer m.after(m.about(ctx, name), api.EvSaved, path, &err)
	if !filepath.IsAbs(path) {
		return api.Errorf(api.ErrInvalid, "save file %q must be an absolute path", path)
	}
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
	hdr := saveHeader{Spec: d.rec.Spec, Accel: d.rec.Accel, SavedAt: time.Now().UTC(), Tenant: d.tenant}
	hdr.Host, _ = os.Hostname()
	err = m.writeSave(ctx, path, hdr, mig)
	if err != nil {
		d.mu.Unlock()
		// QEMU resumes the guest itself when a migration fails.
		return fmt.Errorf("saving %s: %w", name, err)
	}
	if checkpoint {
		err := inst.Resume(ctx)
		d.mu.Unlock()
		return err
	}
	d.mu.Unlock()
	return m.Destroy(ctx, name)
}

func (m *Manager) writeSave(ctx context.Context, path string, hdr saveHeader, mig engine.Migratable) error {
	// A new root-only file beside the target, renamed over it at the end:
	// nothing already at the path (a symlink, someone's file) is followed
	// or reused, and the guest's RAM is never readable by anyone else.
	f, err := safefile.Create(path)
	if err != nil {
		return api.Errorf(api.ErrInvalid, "creating %s: %v", path, err)
	}
	tmp := f.Name()
	defer f.Abort() // a no-op once committed
	hb, _ := json.Marshal(hdr)
	var pre bytes.Buffer
	pre.WriteString(saveMagic)
	binary.Write(&pre, binary.BigEndian, uint32(len(hb)))
	pre.Write(hb)
	if _, err := f.Write(pre.Bytes()); err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	h := sha256.New()
	type copied struct {
		n   int64
		err error
	}
	done := make(chan copied, 1)
	go func() {
		n, err := io.Copy(io.MultiWriter(f, h), pr)
		pr.Close()
		done <- copied{n, err}
	}()
	_, merr := mig.MigrateTo(ctx, pw, engine.MigrateOptions{})
	pw.Close() // QEMU closed its copy when the stream ended
	c := <-done
	if merr != nil {
		return merr
	}
	if c.err != nil {
		return fmt.Errorf("writing %s: %w", tmp, c.err)
	}
	var tr bytes.Buffer
	tr.WriteString(trailerMagic)
	binary.Write(&tr, binary.BigEndian, uint64(c.n))
	tr.Write(h.Sum(nil))
	if _, err := f.Write(tr.Bytes()); err != nil {
		return err
	}
	return f.Commit()
}

// readSave checks a save file completely and returns its header and where
// the stream lies.
func readSave(path string) (saveHeader, int64, int64, error) {
	var hdr saveHeader
	bad := func(format string, a ...any) (saveHeader, int64, int64, error) {
		return hdr, 0, 0, api.Errorf(api.ErrInvalid, "%s is not a usable ringfence save file: %s", path, fmt.Sprintf(format, a...))
	}
	f, err := os.Open(path)
	if err != nil {
		return hdr, 0, 0, api.Errorf(api.ErrInvalid, "opening save file: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return hdr, 0, 0, err
	}
	magic := make([]byte, len(saveMagic)+4)
	if _, err := io.ReadFull(f, magic); err != nil || string(magic[:len(saveMagic)]) != saveMagic {
		return bad("wrong magic (not saved by ringfence, or from an incompatible version)")
	}
	hl := int64(binary.BigEndian.Uint32(magic[len(saveMagic):]))
	if hl > 1<<20 || int64(len(magic))+hl+int64(trailerLen) > fi.Size() {
		return bad("truncated header")
	}
	hb := make([]byte, hl)
	if _, err := io.ReadFull(f, hb); err != nil {
		return bad("truncated header")
	}
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return bad("corrupt header: %v", err)
	}
	start := int64(len(magic)) + hl
	end := fi.Size() - int64(trailerLen)
	tr := make([]byte, trailerLen)
	if _, err := f.ReadAt(tr, end); err != nil || string(tr[:len(trailerMagic)]) != trailerMagic {
		return bad("no trailer: the file is truncated (was the save interrupted?)")
	}
	if n := int64(binary.BigEndian.Uint64(tr[len(trailerMagic):])); n != end-start {
		return bad("the state is %d bytes, the trailer says %d: truncated or corrupt", end-start, n)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, start, end-start)); err != nil {
		return hdr, 0, 0, err
	}
	if !bytes.Equal(h.Sum(nil), tr[len(trailerMagic)+8:]) {
		return bad("checksum mismatch: the state is corrupt")
	}
	if err := domspec.Normalize(&hdr.Spec); err != nil {
		return bad("the saved domain spec is invalid: %v", err)
	}
	return hdr, start, end, nil
}

// Restore starts a domain from a save file; paused leaves it paused. The
// domain keeps the tenant it had when saved; tenant, when set, is the
// only one the caller may restore (a tenant's principal).
func (m *Manager) Restore(ctx context.Context, path string, paused bool, tenant string) (_ api.Domain, err error) {
	hdr, _, _, err := readSave(path)
	if err != nil {
		return api.Domain{}, err
	}
	if tenant != "" && hdr.Tenant != tenant {
		return api.Domain{}, api.Errorf(api.ErrInvalid, "%s holds a domain that is not tenant %s's: a tenant restores only its own domains", path, tenant)
	}
	spec := hdr.Spec
	accel, err := m.validate(&spec, hdr.Tenant)
	if err != nil {
		return api.Domain{}, err
	}
	incoming, closeFile, err := m.saveLoader(path, spec.Name, accel)
	if err != nil {
		return api.Domain{}, err
	}
	defer closeFile()
	defer m.after(m.about(ctx, spec.Name), api.EvRestored, path, &err)
	return m.create(ctx, spec, accel, startOpts{paused: paused, incoming: incoming, kind: kindRestore, tenant: hdr.Tenant})
}

// saveLoader checks a save file (whole: magic, header, length, checksum)
// for domain name and returns what loads it into a starting QEMU.
func (m *Manager) saveLoader(path, name, accel string) (func(context.Context, engine.Migratable) error, func(), error) {
	hdr, start, end, err := readSave(path)
	if err != nil {
		return nil, nil, err
	}
	if hdr.Spec.Name != name {
		return nil, nil, api.Errorf(api.ErrInvalid, "%s holds domain %s, not %s", path, hdr.Spec.Name, name)
	}
	if hdr.Accel != accel {
		return nil, nil, api.Errorf(api.ErrInvalid, "the domain was saved under %s and this host runs %s: its CPU state cannot be loaded", hdr.Accel, accel)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	incoming := func(ctx context.Context, mig engine.Migratable) error {
		pr, pw, err := os.Pipe()
		if err != nil {
			return err
		}
		return loadStream(ctx, mig, pr, pw, io.NewSectionReader(f, start, end-start))
	}
	return incoming, func() { f.Close() }, nil
}

var errNoMigrate = errors.New("this engine cannot load saved state")
