package domain

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/migration"
	"github.com/ringfence/ringfence/internal/storage"
)

// Migration without shared storage (--with-storage): the header lists the
// disks to copy; the destination creates empty ones of the same size and
// format (at the same paths, or in --storage-dir), serves them over NBD,
// and the source mirrors into them before the memory stream starts. NBD
// connections are data connections like the memory stream (token-bound,
// and TLS between the QEMUs unless --plain-stream), relayed by the
// destination daemon to its QEMU's NBD socket.

// copiedDisks lists the disks --with-storage copies: writable disks with
// a backing file. Read-only disks and CD-ROMs must exist on both hosts.
func copiedDisks(spec api.DomainSpec) ([]migration.Disk, error) {
	var out []migration.Disk
	for _, d := range spec.Disks {
		if d.Target == "" || d.CDROM || d.Access == "ro" {
			continue
		}
		size, err := storage.VirtualSize(d.Target, d.Format)
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", d.Guest, err)
		}
		out = append(out, migration.Disk{ID: d.Guest, Path: d.Target, Format: d.Format, SizeB: size})
	}
	return out, nil
}

// planStorage (destination) maps the source's disks to paths here and
// checks they can be created: the directory exists, the file does not.
// It rewrites spec's disk targets and returns the paths to create.
func (m *Manager) planStorage(spec *api.DomainSpec, disks []migration.Disk, dir string) ([]migration.Disk, error) {
	if dir != "" && !filepath.IsAbs(dir) {
		return nil, api.Errorf(api.ErrInvalid, "storage dir %q must be an absolute path", dir)
	}
	var plan []migration.Disk
	for _, md := range disks {
		idx := -1
		for i, d := range spec.Disks {
			if d.Guest == md.ID {
				idx = i
			}
		}
		if idx < 0 {
			return nil, api.Errorf(api.ErrInvalid, "disk %s is not in the domain", md.ID)
		}
		switch md.Format {
		case "", "raw", "qcow2":
		default:
			return nil, api.Errorf(api.ErrInvalid, "disk %s: format %s cannot be copied (raw and qcow2 can)", md.ID, md.Format)
		}
		p := md.Path
		if dir != "" {
			p = filepath.Join(dir, filepath.Base(md.Path))
		}
		// A peer names the paths: the disk policy decides where this host
		// lets a disk be created (never its system or its own state).
		if err := m.o.Policy.CheckFrom(storage.FromPeer, storage.UseNew, p); err != nil {
			return nil, err
		}
		if fi, err := os.Stat(filepath.Dir(p)); err != nil || !fi.IsDir() {
			return nil, api.Errorf(api.ErrInvalid, "disk %s: directory %s does not exist on the destination; create it or pass --storage-dir", md.ID, filepath.Dir(p))
		}
		if _, err := os.Lstat(p); err == nil {
			return nil, api.Errorf(api.ErrConflict, "disk %s: %s already exists on the destination; remove it, migrate without --with-storage if the storage is shared, or pass --storage-dir", md.ID, p)
		}
		spec.Disks[idx].Target = p
		plan = append(plan, migration.Disk{ID: md.ID, Path: p, Format: md.Format, SizeB: md.SizeB})
	}
	return plan, nil
}

// createDisks makes the empty target disks; on error it removes what it
// made. Once made, their removal is on the revert stack of the
// migration's create (incoming.admitted).
func createDisks(plan []migration.Disk) error {
	for i, d := range plan {
		err := storage.CreateImage(d.Path, d.Format, d.SizeB)
		if err != nil {
			removeDisks(plan[:i]) // not plan[i]: it may be a file that was already there
			return fmt.Errorf("creating disk %s at %s: %w", d.ID, d.Path, err)
		}
	}
	return nil
}

func removeDisks(plan []migration.Disk) {
	for _, d := range plan {
		os.Remove(d.Path)
	}
}

// nbdListener makes the unix socket the destination QEMU's NBD server
// listens on (passed to it as an fd), in a directory only root reaches.
func nbdListener(runDir string) (*net.UnixListener, error) {
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, err
	}
	p := filepath.Join(runDir, "nbd.sock")
	os.Remove(p)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("creating the NBD socket: %w", err)
	}
	l.SetUnlinkOnClose(true)
	return l, nil
}

// mirrorOut (source) connects a mirror per disk and waits for all to be
// in sync.
func mirrorOut(ctx context.Context, dm engine.DiskMigrator, disks []migration.Disk, p MigrationPeer, token string, tls *engine.StreamTLS, progress func(api.MigrationProgress)) (int64, error) {
	var targets []engine.MirrorTarget
	defer func() {
		for _, t := range targets {
			t.Conn.Close()
		}
	}()
	for _, d := range disks {
		// NBD runs its own TLS (QEMU's, in the NBD handshake): the socket
		// goes to QEMU as it is.
		c, err := p.DialData(ctx, token+migration.NBDSuffix, true)
		if err != nil {
			return 0, fmt.Errorf("connecting disk %s: %w", d.ID, err)
		}
		f, _, err := migration.StreamFile(ctx, c, true)
		if err != nil {
			return 0, err
		}
		targets = append(targets, engine.MirrorTarget{Disk: d.ID, Conn: f})
	}
	var total int64
	err := dm.MirrorDisks(ctx, targets, tls, func(done, all int64) {
		total = all
		if progress != nil {
			progress(api.MigrationProgress{Status: "disk-copy", TransferredB: done, RemainingB: all - done})
		}
	})
	if err != nil && errors.Is(err, context.Canceled) {
		return 0, err
	}
	return total, err
}

// The steps --with-storage adds to each side.

// mirror (source) copies the disks into the destination's, live, until
// all are in sync.
func (o *outgoing) mirror() error {
	if len(o.disks) == 0 {
		return nil
	}
	// Connect only once the destination serves the disks: QEMU 7.2's
	// NBD client negotiates inside blockdev-add, blocking its monitor.
	select {
	case <-o.disksReady:
	case <-o.ctx.Done():
	case <-time.After(2 * time.Minute):
		o.cancel()
	}
	var ntls *engine.StreamTLS
	if !o.o.Plain && o.ctx.Err() == nil {
		creds, err := o.m.pskCreds(o.nbdKey, int(o.d.uid.Load()))
		if err != nil {
			return err
		}
		ntls = &engine.StreamTLS{Dir: creds, Username: pskUser}
	}
	n, err := mirrorOut(o.ctx, o.dm, o.disks, o.p, o.token, ntls, o.progress)
	if err != nil {
		return o.failed("copying the disks", err)
	}
	o.res.DiskBytes = n
	return nil
}

// finishMirrors (source): our guest is stopped; the mirrors end with the
// copies exact, before the handover.
func (o *outgoing) finishMirrors() error {
	if len(o.disks) == 0 {
		return nil
	}
	if err := o.dm.FinishMirrors(o.ctx); err != nil {
		return fmt.Errorf("finishing the disk copies failed, %s keeps running here: %w", o.name, err)
	}
	return nil
}

// serveDisks (destination) has the new QEMU serve the created disks over
// NBD on the socket reserve made, under a key made for this migration.
func (in *incoming) serveDisks(ctx context.Context, mig engine.Migratable) error {
	var ok bool
	if in.dm, ok = mig.(engine.DiskMigrator); !ok {
		return api.Errorf(api.ErrUnavailable, "this engine cannot receive disks")
	}
	lf, err := in.nbdL.File()
	if err != nil {
		return err
	}
	defer lf.Close()
	var ntls *engine.StreamTLS
	if !in.hdr.Plain {
		in.nbdKey = randomHex(32)
		creds, err := in.m.pskCreds(in.nbdKey, in.m.uidOf(in.spec.Name))
		if err != nil {
			return err
		}
		ntls = &engine.StreamTLS{Dir: creds}
	}
	ids := make([]string, len(in.plan))
	for i, d := range in.plan {
		ids[i] = d.ID
	}
	return in.dm.ServeDisks(ctx, lf, ids, ntls)
}
