package domain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/storage"
)

// Migration without shared storage (--with-storage): the header lists the
// disks to copy; the destination creates empty ones of the same size and
// format (at the same paths, or in --storage-dir), serves them over NBD,
// and the source mirrors into them before the memory stream starts. NBD
// connections are data connections like the memory stream (token-bound,
// and TLS between the QEMUs unless --plain-stream), relayed by the
// destination daemon to its QEMU's NBD socket.

// migDisk is one disk to copy.
type migDisk struct {
	ID     string `json:"id"` // guest disk, e.g. vda
	Path   string `json:"path"`
	Format string `json:"format"`
	SizeB  int64  `json:"size"` // virtual size
}

// nbdSuffix marks a data connection meant for the NBD server.
const nbdSuffix = ".nbd"

// copiedDisks lists the disks --with-storage copies: writable disks with
// a backing file. Read-only disks and CD-ROMs must exist on both hosts.
func copiedDisks(spec api.DomainSpec) ([]migDisk, error) {
	var out []migDisk
	for _, d := range spec.Disks {
		if d.Target == "" || d.CDROM || d.Access == "ro" {
			continue
		}
		size, err := storage.VirtualSize(d.Target, d.Format)
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", d.Guest, err)
		}
		out = append(out, migDisk{ID: d.Guest, Path: d.Target, Format: d.Format, SizeB: size})
	}
	return out, nil
}

// planStorage (destination) maps the source's disks to paths here and
// checks they can be created: the directory exists, the file does not.
// It rewrites spec's disk targets and returns the paths to create.
func (m *Manager) planStorage(spec *api.DomainSpec, disks []migDisk, dir string) ([]migDisk, error) {
	if dir != "" && !filepath.IsAbs(dir) {
		return nil, api.Errorf(api.ErrInvalid, "storage dir %q must be an absolute path", dir)
	}
	var plan []migDisk
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
		plan = append(plan, migDisk{ID: md.ID, Path: p, Format: md.Format, SizeB: md.SizeB})
	}
	return plan, nil
}

// createDisks makes the empty target disks; on error it removes what it
// made. The caller removes them all if the migration fails later.
func createDisks(plan []migDisk) error {
	for i, d := range plan {
		err := storage.CreateImage(d.Path, d.Format, d.SizeB)
		if err != nil {
			removeDisks(plan[:i]) // not plan[i]: it may be a file that was already there
			return fmt.Errorf("creating disk %s at %s: %w", d.ID, d.Path, err)
		}
	}
	return nil
}

func removeDisks(plan []migDisk) {
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

// relay joins a peer's NBD data connection to the local NBD socket.
func relay(c net.Conn, sock string) {
	u, err := net.Dial("unix", sock)
	if err != nil {
		c.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(u, c); done <- struct{}{} }()
	go func() { io.Copy(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
}

// mirrorOut (source) connects a mirror per disk and waits for all to be
// in sync.
func mirrorOut(ctx context.Context, dm engine.DiskMigrator, disks []migDisk, p MigrationPeer, token string, tls *engine.StreamTLS, progress func(api.MigrationProgress)) (int64, error) {
	var targets []engine.MirrorTarget
	defer func() {
		for _, t := range targets {
			t.Conn.Close()
		}
	}()
	for _, d := range disks {
		// NBD runs its own TLS (QEMU's, in the NBD handshake): the socket
		// goes to QEMU as it is.
		c, err := p.DialData(ctx, token+nbdSuffix, true)
		if err != nil {
			return 0, fmt.Errorf("connecting disk %s: %w", d.ID, err)
		}
		f, _, err := streamFile(ctx, c, true)
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
