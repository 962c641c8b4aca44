package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ringfence/ringfence/internal/safefile"
)

// Image operations shared by volumes, clones, storage migration and
// export: one place that runs qemu-img.

func qemuImg(args ...string) error {
	return qemuImgCtx(context.Background(), args...)
}

func qemuImgCtx(ctx context.Context, args ...string) error {
	if out, err := exec.CommandContext(ctx, "qemu-img", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img %s: %v: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

type imgInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	Backing     string `json:"full-backing-filename"`
}

func info(path string) (imgInfo, error) {
	out, err := exec.Command("qemu-img", "info", "--force-share", "--output=json", path).Output()
	var ii imgInfo
	if err != nil {
		return ii, fmt.Errorf("reading %s: %w", path, err)
	}
	err = json.Unmarshal(out, &ii)
	return ii, err
}

// Snapshot runs an internal-snapshot operation of qemu-img on a stopped
// domain's qcow2 image: op is -c (create), -a (apply) or -d (delete).
func Snapshot(op, snap, path string) error {
	switch op {
	case "-c", "-a", "-d":
	default:
		return fmt.Errorf("qemu-img snapshot: unknown operation %q", op)
	}
	if err := qemuImg("snapshot", op, snap, path); err != nil {
		return fmt.Errorf("snapshot %s of %s: %w", snap, path, err)
	}
	return nil
}

// ConvertToRawFile copies a (stopped or shared-readable) image of size
// bytes into f, an open file of the caller's (ScratchFile: no name).
func ConvertToRawFile(ctx context.Context, src, format string, size int64, f *os.File) error {
	if format == "" {
		format = "raw"
	}
	if err := f.Truncate(size); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "qemu-img", "convert", "-U", "-n", "-f", format, "-O", "raw", src, "/dev/fd/3")
	cmd.ExtraFiles = []*os.File{f}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img convert: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ScratchFile is a new root-only file in dir that has no name: it never
// shows in dir, and its space is given back when it is closed, even when
// the daemon dies (O_TMPFILE; where the filesystem has none, a file made
// and unlinked at once).
func ScratchFile(dir string) (*os.File, error) {
	f, err := os.OpenFile(dir, unix.O_TMPFILE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return f, nil
	}
	f, err = os.CreateTemp(dir, ".scratch-*")
	if err != nil {
		return nil, fmt.Errorf("making a scratch file in %s: %w", dir, err)
	}
	os.Remove(f.Name())
	return f, nil
}

// FreeBytes is the space in dir's filesystem that root may still use.
func FreeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bfree) * st.Bsize, nil
}

// newImage makes a file at path, which must not exist: fill writes it
// through an open descriptor of a new file of ours beside path
// (root-only; never a file or symlink someone planted, and never reached
// by its name again, which someone could swap meanwhile), then it is
// renamed onto path unless something appeared there meanwhile.
func newImage(path string, fill func(f *os.File) error) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s already exists", path)
	}
	f, err := safefile.Create(path)
	if err != nil {
		return err
	}
	if err := fill(f.File); err != nil {
		f.Abort()
		return err
	}
	return f.CommitNoReplace()
}

// qemuImgFD runs qemu-img with f as its target, named /dev/fd/3 (the
// descriptor itself, not a path that could be swapped).
func qemuImgFD(f *os.File, args ...string) error {
	for i, a := range args {
		if a == "TARGET" {
			args[i] = "/dev/fd/3"
		}
	}
	cmd := exec.Command("qemu-img", args...)
	cmd.ExtraFiles = []*os.File{f}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img %s: %v: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// CreateImage makes an empty image of size bytes (raw: a sparse file;
// qcow2 via qemu-img) at path, which must not exist; mode 0600.
func CreateImage(path, format string, size int64) error {
	return newImage(path, func(f *os.File) error {
		if format == "" || format == "raw" {
			return f.Truncate(size)
		}
		return qemuImgFD(f, "create", "-q", "-f", format, "TARGET", strconv.FormatInt(size, 10))
	})
}

// Overlay makes a qcow2 image at path backed by base (of baseFormat), the
// thin clone. The backing name is absolute: QEMU gets images as fd sets
// (/dev/fdset/N) and would resolve a relative name against that.
func Overlay(base, baseFormat, path string, size int64) error {
	if baseFormat == "" {
		baseFormat = "raw"
	}
	return newImage(path, func(f *os.File) error {
		args := []string{"create", "-q", "-f", "qcow2", "-F", baseFormat, "-b", base, "TARGET"}
		if size > 0 {
			args = append(args, strconv.FormatInt(size, 10))
		}
		return qemuImgFD(f, args...)
	})
}

// VirtualSize is the size the guest sees: a raw file's length, else what
// qemu-img reports (shared lock: a guest may have the image open).
func VirtualSize(path, format string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	if (format == "" || format == "raw") && fi.Mode().IsRegular() {
		return fi.Size(), nil
	}
	ii, err := info(path)
	return ii.VirtualSize, err
}

// ConvertToQcow2 writes a raw image as a new qcow2 file at dst (zero
// blocks stay unallocated): an OS image's template.
func ConvertToQcow2(ctx context.Context, raw, dst string) error {
	if err := qemuImgCtx(ctx, "convert", "-q", "-f", "raw", "-O", "qcow2", raw, dst); err != nil {
		os.Remove(dst)
		return err
	}
	return nil
}
