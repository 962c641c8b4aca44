// Package imagelock speaks QEMU's image-locking protocol (block/
// file-posix.c) for images the daemon opens and hands to QEMU as fds.
//
// QEMU's own locking is off for those fds (it assumes each reopen is a new
// open file description; dups from an fd set share one, and a block job
// aborted QEMU). So the daemon takes the same locks QEMU would, on the
// open file descriptions it passes: OFD locks live as long as any copy of
// the descriptor is open, that is, as long as QEMU has the image, even if
// the daemon restarts. Every QEMU with locking on, qemu-img without -U,
// and every other ringfence daemon on the host then sees the image as in
// use, exactly as if QEMU had locked it itself.
//
// The protocol: byte 100+i is read-locked by a user holding permission i,
// byte 200+i by a user that does not share permission i with others. A
// user may take permission i only if nobody locks 200+i, and may refuse to
// share i only if nobody locks 100+i.
package imagelock

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

const (
	permBase   = 100
	sharedBase = 200
)

// QEMU's permission bits (include/block/block-common.h).
const (
	permConsistentRead = 0
	permWrite          = 1
)

var permNames = []string{"read", "write"}

// spec is what one kind of user holds and refuses to share.
type spec struct{ hold, unshare []int }

// A writer, as QEMU 7.2's virtio-blk on a read-write image (bytes 100,
// 101 and 201, read off /proc/locks): it reads and writes, and lets
// nobody else write. A reader, as a read-only drive: it reads and lets
// nobody write.
var (
	writer = spec{hold: []int{permConsistentRead, permWrite}, unshare: []int{permWrite}}
	reader = spec{hold: []int{permConsistentRead}, unshare: []int{permWrite}}
)

func specFor(write bool) spec {
	if write {
		return writer
	}
	return reader
}

// ErrInUse is returned when another process's locks conflict.
type ErrInUse struct {
	Path string
	Perm string
	Mine bool // we wanted to hold Perm (else: to keep it from others)
}

func (e *ErrInUse) Error() string {
	if e.Mine {
		return fmt.Sprintf("%s is open in another process (a QEMU, qemu-img or another ringfence daemon) that does not let others %s it", e.Path, e.Perm)
	}
	return fmt.Sprintf("%s is open for %s in another process (a QEMU, qemu-img or another ringfence daemon)", e.Path, e.Perm)
}

// Test reports whether f could be locked for write (or read) without a
// conflict with another open file description's locks.
func Test(f *os.File, write bool) error {
	s := specFor(write)
	for _, p := range s.hold {
		if held(f, sharedBase+p) {
			return &ErrInUse{Path: f.Name(), Perm: permNames[p], Mine: true}
		}
	}
	for _, p := range s.unshare {
		if held(f, permBase+p) {
			return &ErrInUse{Path: f.Name(), Perm: permNames[p]}
		}
	}
	return nil
}

// Lock checks and takes the locks QEMU would hold on f's open file
// description. They are released when the last descriptor of it closes.
func Lock(f *os.File, write bool) error {
	if err := Test(f, write); err != nil {
		return err
	}
	s := specFor(write)
	for _, p := range s.hold {
		if err := setRead(f, permBase+p); err != nil {
			return err
		}
	}
	for _, p := range s.unshare {
		if err := setRead(f, sharedBase+p); err != nil {
			return err
		}
	}
	// Re-check: another locker may have raced between test and set (QEMU
	// does the same).
	return Test(f, write)
}

// TestPath opens path read-only and tests it.
func TestPath(path string, write bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return Test(f, write)
}

func held(f *os.File, off int) bool {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: int64(off), Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false
	}
	return lk.Type != unix.F_UNLCK
}

func setRead(f *os.File, off int) error {
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: int64(off), Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		return fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return nil
}

// Release drops every lock of f's open file description (for a migration
// source handing its image over, or a downgrade).
func Release(f *os.File) error {
	for _, off := range []int{permBase + permConsistentRead, permBase + permWrite, sharedBase + permConsistentRead, sharedBase + permWrite} {
		lk := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0, Start: int64(off), Len: 1}
		if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
			return fmt.Errorf("unlocking %s: %w", f.Name(), err)
		}
	}
	return nil
}
