package storage

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

// fakeImage puts a built image's files into a pool.
func fakeImage(t *testing.T, p api.Pool, name string) {
	t.Helper()
	f := ImageFilesIn(p.Dir, name)
	os.MkdirAll(filepath.Dir(f.Meta), 0o755)
	if err := CreateImage(f.Template, "qcow2", 1<<30); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(f.Kernel, []byte("k"), 0o644)
	os.WriteFile(f.Initrd, []byte("i"), 0o644)
	if err := WriteImageMeta(f.Meta, api.Image{OS: "Debian", Recipe: "r1", SizeB: 1 << 30}); err != nil {
		t.Fatal(err)
	}
}

func TestImages(t *testing.T) {
	a := api.Pool{Name: "a", Dir: t.TempDir()}
	b := api.Pool{Name: "b", Dir: t.TempDir()}
	fakeImage(t, a, "debian-12")
	fakeImage(t, b, "debian-12")
	fakeImage(t, b, "other")
	pools := []api.Pool{a, b}
	if ims := Images(pools); len(ims) != 3 || ims[0].Pool != "a" || ims[2].Name != "other" {
		t.Fatalf("Images: %+v", ims)
	}
	for _, c := range []struct {
		name, pool string
		want       string // pool found, or the error's text
	}{
		{"other", "", "b"},
		{"debian-12", "b", "b"},
		{"debian-12", "", "in several pools"},
		{"nosuch", "", "no image nosuch"},
		{"other", "a", "pool a has no image other"},
		{"../x", "", "image"},
	} {
		im, err := FindImage(pools, c.name, c.pool)
		got := im.Pool
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("FindImage(%s, %s) = %q, want %q", c.name, c.pool, got, c.want)
		}
	}
	// Refused while a clone stands on the template; then gone, files
	// and all.
	clone := filepath.Join(b.Dir, "web01-disk.qcow2")
	if err := Overlay(ImageFilesIn(b.Dir, "other").Template, "qcow2", clone, 0); err != nil {
		t.Fatal(err)
	}
	if err := DeleteImage(b, "other"); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "web01-disk.qcow2") {
		t.Fatalf("DeleteImage with a clone: %v", err)
	}
	os.Remove(clone)
	if err := DeleteImage(b, "other"); err != nil {
		t.Fatal(err)
	}
	f := ImageFilesIn(b.Dir, "other")
	for _, p := range []string{f.Template, f.Kernel, f.Initrd, f.Meta} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left after delete", p)
		}
	}
	// A description whose files are missing is not an image.
	os.Remove(ImageFilesIn(a.Dir, "debian-12").Kernel)
	if _, err := ReadImage(a, "debian-12"); err == nil || !strings.Contains(err.Error(), "build it again") {
		t.Errorf("ReadImage with a missing kernel: %v", err)
	}
}
