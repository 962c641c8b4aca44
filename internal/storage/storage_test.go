package storage

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"web01.img", true}, {"a", true}, {"db_2-data.qcow2", true},
		{"", false}, {"../etc", false}, {"a/b", false}, {"a..b", false}, {".hidden", false},
		{"-rf", false}, {strings.Repeat("x", 65), false}, {"sp ace", false},
	} {
		if err := CheckName("volume", tc.name); (err == nil) != tc.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestCheckPoolDir(t *testing.T) {
	pools := []api.Pool{{Name: "fast", Dir: "/srv/pools/fast"}}
	for _, tc := range []struct {
		dir, want string // want: "" = accepted, else a piece of the error
	}{
		{"/srv/pools/slow", ""},
		{"/srv/pools/fast2", ""},
		{"/srv/pools/fast/inner", "inside pool fast"},
		{"/srv/pools/fast", "inside pool fast"},
		{"/srv/pools", "contains pool fast"},
		{"/srv/pools/fast/../fast/x", "inside pool fast"},
		{"relative/dir", "absolute"},
		{"/", "cannot be /"},
	} {
		_, err := CheckPoolDir(tc.dir, pools)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckPoolDir(%q) = %v, want %q", tc.dir, err, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"4096", 4096}, {"1K", 1024}, {"512M", 512 << 20}, {"10G", 10 << 30}, {"2t", 2 << 40},
		{"0", 0}, {"-1G", 0}, {"G", 0}, {"1.5G", 0}, {"9999999999T", 0},
	} {
		got, err := ParseSize(tc.in)
		if got != tc.want || (tc.want == 0) != (err != nil) {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

// TestVolumes runs qemu-img for real: create, thin clone, resize, delete.
func TestVolumes(t *testing.T) {
	p := api.Pool{Name: "t", Dir: t.TempDir()}
	tpl, err := CreateVolume(p, api.VolumeRequest{Name: "base.img", SizeB: 64 << 20})
	if err != nil || tpl.Format != "raw" || tpl.VirtualB != 64<<20 {
		t.Fatalf("create raw: %+v %v", tpl, err)
	}
	clone, err := CreateVolume(p, api.VolumeRequest{Name: "web01.qcow2", From: "base.img"})
	if err != nil || clone.Format != "qcow2" || clone.VirtualB != 64<<20 || clone.Backing != filepath.Join(p.Dir, "base.img") {
		t.Fatalf("clone: %+v %v", clone, err)
	}
	if clone.AllocatedB > 1<<20 {
		t.Errorf("a thin clone allocated %d bytes", clone.AllocatedB)
	}
	for _, bad := range []api.VolumeRequest{
		{Name: "base.img", SizeB: 1 << 20},          // exists
		{Name: "x", SizeB: 1 << 20, Format: "vmdk"}, // format
		{Name: "y"},                                   // no size
		{Name: "z", From: "nope"},                     // no template
		{Name: "../escape", SizeB: 1 << 20},           // name
		{Name: "w", From: "base.img", SizeB: 1 << 20}, // smaller than template
		{Name: "v", From: "base.img", Format: "raw"},  // clones are qcow2
	} {
		if _, err := CreateVolume(p, bad); err == nil {
			t.Errorf("CreateVolume(%+v) succeeded", bad)
		}
	}
	vols, err := Volumes(p)
	if err != nil || len(vols) != 2 {
		t.Fatalf("volumes after bad creates: %+v %v (nothing may be left behind)", vols, err)
	}
	if _, err := ResizeVolume(p, "web01.qcow2", 32<<20); err == nil {
		t.Error("shrinking was accepted")
	}
	if v, err := ResizeVolume(p, "web01.qcow2", 128<<20); err != nil || v.VirtualB != 128<<20 {
		t.Fatalf("grow: %+v %v", v, err)
	}
	if err := DeleteVolume(p, "base.img"); err == nil || !strings.Contains(err.Error(), "template of web01.qcow2") {
		t.Fatalf("deleting a template in use: %v", err)
	}
	if err := DeleteVolume(p, "web01.qcow2"); err != nil {
		t.Fatal(err)
	}
	if err := DeleteVolume(p, "base.img"); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(p.Dir); len(ents) != 0 {
		t.Fatalf("files left: %v", ents)
	}
}

// Disks come out of an archive sparse: zero blocks are holes.
func TestSparseCopy(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "d.raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := make([]byte, 8<<20)
	copy(data[1<<20:], "payload")
	n, err := sparseCopy(f, bytes.NewReader(data))
	if err != nil || n != int64(len(data)) {
		t.Fatal(n, err)
	}
	fi, _ := f.Stat()
	if fi.Size() != int64(len(data)) {
		t.Fatalf("size %d", fi.Size())
	}
	if alloc := fi.Sys().(*syscall.Stat_t).Blocks * 512; alloc > 1<<20 {
		t.Fatalf("%d bytes allocated for 64 KiB of data", alloc)
	}
	got := make([]byte, 7)
	f.ReadAt(got, 1<<20)
	if string(got) != "payload" {
		t.Fatalf("%q", got)
	}
}
