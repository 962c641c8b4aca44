// Package storage is directory pools and the volumes in them: disk images
// made with qemu-img, thin clones as qcow2 overlays on a template. A pool
// is a name for a directory; the directory itself is the truth about its
// volumes (list reads it), so nothing can drift between a record and the
// files.
package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/names"
	"github.com/ringfence/ringfence/internal/spec"
)

// CheckName validates a pool, volume, snapshot or network name (the one
// rule in internal/names) as an invalid-input error.
func CheckName(kind, name string) error {
	if err := names.Check(kind, name); err != nil {
		return api.Errorf(api.ErrInvalid, "%v", err)
	}
	return nil
}

// CheckPoolDir validates a new pool's directory against the pools that
// exist: absolute, clean, and neither inside nor around another pool.
func CheckPoolDir(dir string, pools []api.Pool) (string, error) {
	if !filepath.IsAbs(dir) {
		return "", api.Errorf(api.ErrInvalid, "pool directory %q must be an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	if dir == "/" {
		return "", api.Errorf(api.ErrInvalid, "pool directory cannot be /")
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return "", api.Errorf(api.ErrInvalid, "pool directory %s exists and is not a directory", dir)
	}
	for _, p := range pools {
		if within(dir, p.Dir) {
			return "", api.Errorf(api.ErrConflict, "pool directory %s is inside pool %s (%s); pick a directory outside every pool", dir, p.Name, p.Dir)
		}
		if within(p.Dir, dir) {
			return "", api.Errorf(api.ErrConflict, "pool directory %s contains pool %s (%s); pick a directory outside every pool", dir, p.Name, p.Dir)
		}
	}
	return dir, nil
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// ParseSize reads sizes like 10G, 512M, 1T, 4096 (bytes), as qemu-img does.
func ParseSize(s string) (int64, error) {
	v, err := spec.ParseSize(s)
	if err != nil {
		return 0, api.Errorf(api.ErrInvalid, "size %q: want a positive number with an optional K, M, G or T suffix, e.g. 10G", s)
	}
	return v, nil
}

// Volumes lists the images in a pool, with virtual and allocated size.
func Volumes(p api.Pool) ([]api.Volume, error) {
	ents, err := os.ReadDir(p.Dir)
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", p.Name, err)
	}
	var out []api.Volume
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		v, err := Volume(p, e.Name())
		if err != nil {
			continue // not an image qemu-img can read
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Volume describes one volume.
func Volume(p api.Pool, name string) (api.Volume, error) {
	if err := CheckName("volume", name); err != nil {
		return api.Volume{}, err
	}
	path := filepath.Join(p.Dir, name)
	fi, err := os.Stat(path)
	if err != nil {
		return api.Volume{}, api.Errorf(api.ErrNotFound, "pool %s has no volume %s", p.Name, name)
	}
	ii, err := info(path)
	if err != nil {
		return api.Volume{}, err
	}
	var alloc int64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		alloc = st.Blocks * 512
	}
	return api.Volume{Pool: p.Name, Name: name, Path: path, Format: ii.Format, VirtualB: ii.VirtualSize, AllocatedB: alloc, Backing: ii.Backing}, nil
}

// CreateVolume makes a volume: an empty raw or qcow2 image of size, or,
// with from, a qcow2 overlay on that template (a thin clone: O(1) in the
// template's size; the template must then stay unchanged). Nothing is
// left behind on error.
func CreateVolume(p api.Pool, req api.VolumeRequest) (api.Volume, error) {
	if err := CheckName("volume", req.Name); err != nil {
		return api.Volume{}, err
	}
	path := filepath.Join(p.Dir, req.Name)
	if _, err := os.Lstat(path); err == nil {
		return api.Volume{}, api.Errorf(api.ErrConflict, "pool %s already has a volume %s", p.Name, req.Name)
	}
	format := req.Format
	if req.From != "" {
		tpl, err := Volume(p, req.From)
		if err != nil {
			return api.Volume{}, err
		}
		if format != "" && format != "qcow2" {
			return api.Volume{}, api.Errorf(api.ErrInvalid, "a clone (--from) is always qcow2, not %s", format)
		}
		if req.SizeB > 0 && req.SizeB < tpl.VirtualB {
			return api.Volume{}, api.Errorf(api.ErrInvalid, "a clone cannot be smaller than its template (%d bytes)", tpl.VirtualB)
		}
		if err := Overlay(tpl.Path, tpl.Format, path, req.SizeB); err != nil {
			return api.Volume{}, err
		}
	} else {
		if format == "" {
			format = "raw"
		}
		if format != "raw" && format != "qcow2" {
			return api.Volume{}, api.Errorf(api.ErrInvalid, "format %q: want raw or qcow2", format)
		}
		if req.SizeB <= 0 {
			return api.Volume{}, api.Errorf(api.ErrInvalid, "a new volume needs a size, e.g. 10G")
		}
		if err := CreateImage(path, format, req.SizeB); err != nil {
			return api.Volume{}, err
		}
	}
	return Volume(p, req.Name)
}

// ResizeVolume grows a volume (shrinking would cut data off the guest's
// file systems, so it is refused).
func ResizeVolume(p api.Pool, name string, size int64) (api.Volume, error) {
	v, err := Volume(p, name)
	if err != nil {
		return v, err
	}
	if size < v.VirtualB {
		return v, api.Errorf(api.ErrInvalid, "volume %s is %d bytes; shrinking would cut off data the guest may use: give a size of at least that", name, v.VirtualB)
	}
	if err := qemuImg("resize", "-q", "-f", v.Format, v.Path, strconv.FormatInt(size, 10)); err != nil {
		return v, err
	}
	return Volume(p, name)
}

// Dependents lists the volumes of the pool backed by name.
func Dependents(p api.Pool, name string) []string {
	vols, _ := Volumes(p)
	target := filepath.Join(p.Dir, name)
	var out []string
	for _, v := range vols {
		if v.Backing != "" && filepath.Clean(v.Backing) == target {
			out = append(out, v.Name)
		}
	}
	return out
}

// DeleteVolume removes a volume; the caller has checked no domain uses it.
func DeleteVolume(p api.Pool, name string) error {
	v, err := Volume(p, name)
	if err != nil {
		return err
	}
	if deps := Dependents(p, name); len(deps) > 0 {
		return api.Errorf(api.ErrConflict, "volume %s is the template of %s; delete those clones first", name, strings.Join(deps, ", "))
	}
	if err := os.Remove(v.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
