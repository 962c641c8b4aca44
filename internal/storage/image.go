package storage

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/ringfence/ringfence/internal/safefile"
)

// Image operations shared by volumes, clones, storage migration and
// export: one place that runs qemu-img.

func qemuImg(args ...string) error {
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img %s: %v: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newImage makes a file at path, which must not exist: fill writes it
// under a new name of ours beside path (root-only, never a file or
// symlink someone planted), then it is renamed onto path unless something
// appeared there meanwhile.
func newImage(path string, fill func(tmp string) error) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s already exists", path)
	}
	f, err := safefile.Create(path)
	if err != nil {
		return err
	}
	if err := fill(f.Name()); err != nil {
		f.Abort()
		return err
	}
	return f.CommitNoReplace()
}

// CreateImage makes an empty image of size bytes (raw: a sparse file;
// qcow2 via qemu-img) at path, which must not exist; mode 0600.
func CreateImage(path, format string, size int64) error {
	return newImage(path, func(tmp string) error {
		if format == "" || format == "raw" {
			return os.Truncate(tmp, size)
		}
		return qemuImg("create", "-q", "-f", format, tmp, strconv.FormatInt(size, 10))
	})
}

// Overlay makes a qcow2 image at path backed by base (of baseFormat), the
// thin clone. The backing name is absolute: QEMU gets images as fd sets
// (/dev/fdset/N) and would resolve a relative name against that.
func Overlay(base, baseFormat, path string, size int64) error {
	if baseFormat == "" {
		baseFormat = "raw"
	}
	return newImage(path, func(tmp string) error {
		args := []string{"create", "-q", "-f", "qcow2", "-F", baseFormat, "-b", base, tmp}
		if size > 0 {
			args = append(args, strconv.FormatInt(size, 10))
		}
		return qemuImg(args...)
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
