package storage

// OS images in pools: a template volume (NAME.qcow2, an ordinary volume
// of the pool, which thin clones name as their backing file) plus its
// boot files and description in the pool's hidden .images directory
// (volume list skips dot-files): .images/NAME.json, .images/NAME.vmlinuz
// and .images/NAME.initrd. The description is written last, so an image
// whose .json is missing or names another recipe is not (yet) built.
// internal/image builds images; this file is the one place that knows
// where they live and what describes them.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/safefile"
)

// ImagesDir is the hidden directory of a pool that holds its images'
// boot files and descriptions.
const ImagesDir = ".images"

// ImageFiles are where one image of a pool lives.
type ImageFiles struct {
	Template string // the template volume, POOL/NAME.qcow2
	Kernel   string // .images/NAME.vmlinuz (direct kernel boot)
	Initrd   string // .images/NAME.initrd
	Meta     string // .images/NAME.json, written last
}

// ImageFilesIn returns where image name lives in a pool directory.
func ImageFilesIn(poolDir, name string) ImageFiles {
	d := filepath.Join(poolDir, ImagesDir)
	return ImageFiles{Template: filepath.Join(poolDir, name+".qcow2"), Kernel: filepath.Join(d, name+".vmlinuz"),
		Initrd: filepath.Join(d, name+".initrd"), Meta: filepath.Join(d, name+".json")}
}

// TemplateVolume is the name of an image's template volume in its pool.
func TemplateVolume(name string) string { return name + ".qcow2" }

// ReadImage reads the description of image name in pool p (ErrNotFound
// when the pool holds no such built image).
func ReadImage(p api.Pool, name string) (api.Image, error) {
	if err := CheckName("image", name); err != nil {
		return api.Image{}, err
	}
	f := ImageFilesIn(p.Dir, name)
	b, err := os.ReadFile(f.Meta)
	if err != nil {
		return api.Image{}, api.Errorf(api.ErrNotFound, "pool %s has no image %s", p.Name, name)
	}
	var im api.Image
	if err := json.Unmarshal(b, &im); err != nil {
		return api.Image{}, fmt.Errorf("image %s in pool %s: %s is damaged (%v): delete the image and build it again", name, p.Name, f.Meta, err)
	}
	im.Name, im.Pool = name, p.Name
	im.Template, im.Kernel, im.Initrd = f.Template, f.Kernel, f.Initrd
	for _, path := range []string{f.Template, f.Kernel, f.Initrd} {
		if _, err := os.Stat(path); err != nil {
			return api.Image{}, fmt.Errorf("image %s in pool %s: %s is missing: delete the image and build it again", name, p.Name, path)
		}
	}
	im.Clones = Dependents(p, TemplateVolume(name))
	return im, nil
}

// WriteImageMeta writes an image's description to path (the build's
// scratch copy, renamed into place last).
func WriteImageMeta(path string, im api.Image) error {
	im.Name, im.Pool, im.Template, im.Kernel, im.Initrd, im.Clones = "", "", "", "", "", nil
	b, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return err
	}
	return safefile.WriteFile(path, append(b, '\n'), 0o644)
}

// Images lists the built images of the pools.
func Images(pools []api.Pool) []api.Image {
	var out []api.Image
	for _, p := range pools {
		metas, _ := filepath.Glob(filepath.Join(p.Dir, ImagesDir, "*.json"))
		for _, m := range metas {
			if im, err := ReadImage(p, strings.TrimSuffix(filepath.Base(m), ".json")); err == nil {
				out = append(out, im)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Pool < out[j].Pool
	})
	return out
}

// FindImage returns the image called name in pools: the one of pool if
// given, else the only one of that name (several: the caller must say
// which pool).
func FindImage(pools []api.Pool, name, pool string) (api.Image, error) {
	var found []api.Image
	for _, im := range Images(pools) {
		if im.Name == name && (pool == "" || im.Pool == pool) {
			found = append(found, im)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		return api.Image{}, api.Errorf(api.ErrInvalid, "image %s is in several pools: say which with image_pool= (--image-pool)", name)
	case pool != "":
		return api.Image{}, api.Errorf(api.ErrNotFound, "pool %s has no image %s: `ringfence image list` shows the built ones, `ringfence image build %s --pool %s` makes it", pool, name, name, pool)
	}
	return api.Image{}, api.Errorf(api.ErrNotFound, "no image %s: `ringfence image list` shows the built ones, `ringfence image build %s` makes it", name, name)
}

// DeleteImage removes an image: refused while thin clones depend on its
// template. The description goes first, so a half-deleted image is no
// longer listed, never a listed image with missing files.
func DeleteImage(p api.Pool, name string) error {
	im, err := ReadImage(p, name)
	if err != nil {
		return err
	}
	if len(im.Clones) > 0 {
		return api.Errorf(api.ErrConflict, "image %s is the template of %s: delete those volumes (or their domains' disks) first",
			name, strings.Join(im.Clones, ", "))
	}
	f := ImageFilesIn(p.Dir, name)
	for _, path := range []string{f.Meta, f.Template, f.Kernel, f.Initrd} {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("deleting image %s: %w", name, err)
		}
	}
	return nil
}
