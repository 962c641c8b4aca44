package storage

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Image operations shared by volumes, clones, storage migration and
// export: one place that runs qemu-img.

func qemuImg(args ...string) error {
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img %s: %v: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// CreateImage makes an empty image of size bytes (raw: a sparse file;
// qcow2 via qemu-img) at path, which must not exist; mode 0600.
func CreateImage(path, format string, size int64) error {
	if format == "" || format == "raw" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		err = f.Truncate(size)
		f.Close()
		if err != nil {
			os.Remove(path)
		}
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s already exists", path)
	}
	if err := qemuImg("create", "-q", "-f", format, path, strconv.FormatInt(size, 10)); err != nil {
		os.Remove(path)
		return err
	}
	return os.Chmod(path, 0o600)
}

// Overlay makes a qcow2 image at path backed by base (of baseFormat), the
// thin clone. The backing name is absolute: QEMU gets images as fd sets
// (/dev/fdset/N) and would resolve a relative name against that.
func Overlay(base, baseFormat, path string, size int64) error {
	if baseFormat == "" {
		baseFormat = "raw"
	}
	args := []string{"create", "-q", "-f", "qcow2", "-F", baseFormat, "-b", base, path}
	if size > 0 {
		args = append(args, strconv.FormatInt(size, 10))
	}
	if err := qemuImg(args...); err != nil {
		os.Remove(path)
		return err
	}
	return os.Chmod(path, 0o600)
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
