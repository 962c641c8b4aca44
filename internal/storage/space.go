package storage

// Room on the filesystems the daemon writes to (save files, run dirs):
// a full one is said as such, naming the filesystem, rather than by what
// broke downstream of it (a "Broken pipe" from QEMU, a pid file QEMU
// could not write).

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/procfs"
)

// FilesystemOf names the filesystem that holds path, as "SOURCE (TYPE)
// at MOUNTPOINT" ("tmpfs (tmpfs) at /run"), or the path's directory when
// the mounts cannot be read.
func FilesystemOf(path string) string {
	dir := filepath.Dir(path)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	ms, err := procfs.Mountinfo("")
	if err != nil {
		return dir
	}
	best := procfs.Mount{}
	for _, m := range ms {
		if under(dir, m.Point) && len(m.Point) >= len(best.Point) {
			best = m
		}
	}
	if best.Point == "" {
		return dir
	}
	return fmt.Sprintf("%s (%s) at %s", best.Source, best.FSType, best.Point)
}

// NoSpace turns a "no space left on device" error from writing what (a
// save file, the run dir) at path into one that names the filesystem and
// what to do; any other error is returned as it is.
func NoSpace(what, path string, err error) error {
	if !errors.Is(err, syscall.ENOSPC) {
		return err
	}
	return api.Errorf(api.ErrInsufficient, "no space left on %s, the filesystem of %s (%s): free space there or use another place", FilesystemOf(path), what, path)
}

// CheckRoom refuses to use dir for what when its filesystem has less
// than need bytes free for an unprivileged writer (QEMU runs as one).
func CheckRoom(what, dir string, need int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil // not ours to judge: the write that follows says what is wrong
	}
	if free := int64(st.Bavail) * st.Bsize; free < need {
		return api.Errorf(api.ErrInsufficient, "no space left on %s, the filesystem of %s (%s): %d KiB free, %d KiB needed; free space there or use another place",
			FilesystemOf(filepath.Join(dir, ".")), what, dir, free>>10, need>>10)
	}
	return nil
}
