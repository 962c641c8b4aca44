// Package safefile writes files at paths an admin (or an API caller)
// names, as root, without trusting what is already there: a new file is
// always created by us (O_EXCL, O_NOFOLLOW, mode 0600, random name) in the
// target's own directory, written, synced and renamed over the target in
// one step. A symlink or a pre-made file at the target or at a guessable
// temporary name can neither redirect the write nor read what is written.
package safefile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// File is a file being written; Commit puts it in place, Abort removes it.
type File struct {
	*os.File
	final string
	done  bool
}

// Create starts a file that will become path on Commit.
func Create(path string) (*File, error) {
	dir, base := filepath.Split(path)
	if base == "" || base == "." || base == ".." {
		return nil, fmt.Errorf("%q names no file", path)
	}
	if dir == "" {
		dir = "."
	}
	for i := 0; i < 10; i++ {
		var rnd [8]byte
		rand.Read(rnd[:])
		tmp := filepath.Join(dir, "."+base+"."+hex.EncodeToString(rnd[:])+".part")
		fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "create", Path: path, Err: err}
		}
		// The umask may have taken bits away, never added: make it exact.
		unix.Fchmod(fd, 0o600)
		return &File{File: os.NewFile(uintptr(fd), tmp), final: path}, nil
	}
	return nil, fmt.Errorf("creating a temporary file beside %s: too many collisions", path)
}

// Commit syncs the file, closes it and renames it onto its final path
// (replacing a file or symlink there, never following it), then syncs the
// directory so the rename survives a crash.
func (f *File) Commit() error {
	return f.commit(func(from, to string) error { return os.Rename(from, to) })
}

// CommitNoReplace is Commit, but fails (and removes the file) if
// something already exists at the final path.
func (f *File) CommitNoReplace() error {
	return f.commit(func(from, to string) error {
		if err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE); err != nil {
			return &os.PathError{Op: "create", Path: to, Err: err}
		}
		return nil
	})
}

func (f *File) commit(rename func(from, to string) error) error {
	if f.done {
		return errors.New("safefile: already committed or aborted")
	}
	f.done = true
	err := f.File.Sync()
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rename(f.Name(), f.final)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	return SyncDir(filepath.Dir(f.final))
}

// Abort removes the unfinished file (a no-op after Commit).
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.Name())
}

// SyncDir fsyncs a directory (a rename or create in it is then durable).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteFile writes data to path atomically with mode (at most 0600's
// owner bits unless asked for more, applied before the rename).
func WriteFile(path string, data []byte, mode os.FileMode) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return err
	}
	if mode != 0o600 {
		if err := f.Chmod(mode); err != nil {
			f.Abort()
			return err
		}
	}
	return f.Commit()
}
