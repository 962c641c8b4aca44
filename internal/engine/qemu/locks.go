package qemu

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/imagelock"
	"github.com/ringfence/ringfence/internal/procfs"
)

// Images handed to QEMU are locked by the daemon on the descriptors it
// passes, the way QEMU would lock them itself (internal/imagelock). The
// locks live with QEMU's descriptors; to change them later (a migration
// handing an image over, a live clone turning an image into a backing
// file) the daemon takes a copy of QEMU's own descriptor (pidfd_getfd:
// the same open file description) and relocks that.

// openImage opens a disk image for QEMU: mode O_RDONLY or O_RDWR. A
// writable block device is opened exclusively (O_EXCL), so the kernel
// refuses it while it is mounted or claimed, and refuses a mount while
// QEMU has it.
func openImage(path string, mode int, exclusive bool) (*os.File, error) {
	flags := mode | syscall.O_CLOEXEC
	if exclusive {
		flags |= syscall.O_EXCL
	}
	f, err := os.OpenFile(path, flags, 0)
	if errors.Is(err, syscall.EBUSY) {
		return nil, fmt.Errorf("%s is in use on this host (mounted, or claimed by another process or device): %w", path, err)
	}
	return f, err
}

// lockImage takes the image locks of a disk on one of its descriptors.
func lockImage(f *os.File, d engine.Disk) error {
	if err := imagelock.Lock(f, !d.ReadOnly && !d.CDROM); err != nil {
		return fmt.Errorf("disk %s: %w", d.ID, err)
	}
	return nil
}

// qemuFiles returns copies of every descriptor the QEMU pid holds on the
// file at path (same open file descriptions, via pidfd_getfd).
func qemuFiles(pid int, path string) ([]*os.File, error) {
	want, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("opening QEMU %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	fds, err := procfs.FDsOf(pid, want)
	if err != nil {
		return nil, err
	}
	var out []*os.File
	for _, n := range fds {
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err != nil {
			for _, f := range out {
				f.Close()
			}
			return nil, fmt.Errorf("taking QEMU's descriptor of %s: %w", path, err)
		}
		out = append(out, os.NewFile(uintptr(fd), path))
	}
	return out, nil
}

// relock sets the locks QEMU's descriptors of path hold: "write", "read",
// or "" (none).
func (i *instance) relock(path, mode string) error {
	files, err := qemuFiles(i.st.PID, path)
	if err != nil {
		return err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, f := range files {
		if err := imagelock.Release(f); err != nil {
			return err
		}
	}
	if mode == "" {
		return nil
	}
	// Locks of two open file descriptions conflict even in one process:
	// lock only the primary one (the read-write description when there
	// is one; dups of it share its locks).
	for _, f := range primary(files) {
		if err := imagelock.Lock(f, mode == "write"); err != nil {
			return err
		}
	}
	return nil
}

// primary keeps the read-write descriptors of files, or all of them when
// none is read-write.
func primary(files []*os.File) []*os.File {
	var rw []*os.File
	for _, f := range files {
		if fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0); err == nil && fl&unix.O_ACCMODE == unix.O_RDWR {
			rw = append(rw, f)
		}
	}
	if len(rw) > 0 {
		return rw
	}
	return files
}

// ReleaseDiskLocks implements engine.DiskLocker: a migration source drops
// its images' locks once the destination has the guest's state, so the
// destination (on the same storage) can take them.
func (i *instance) ReleaseDiskLocks(disks []engine.Disk) error {
	var errs []error
	for _, d := range disks {
		if d.Path != "" {
			errs = append(errs, i.relock(d.Path, ""))
		}
	}
	return errors.Join(errs...)
}

// TakeDiskLocks implements engine.DiskLocker: after an incoming migration
// (started unlocked, while the source still held the images) or a failed
// handover on the source.
func (i *instance) TakeDiskLocks(disks []engine.Disk) error {
	var errs []error
	for _, d := range disks {
		if d.Path == "" {
			continue
		}
		mode := "write"
		if d.ReadOnly || d.CDROM {
			mode = "read"
		}
		errs = append(errs, i.relock(d.Path, mode))
	}
	return errors.Join(errs...)
}
