package image

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The cpio archive must be readable by the standard cpio tool, with the
// device node and symlink intact.
func TestCPIO(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Fatal("cpio tool missing: apt-get install cpio")
	}
	var buf bytes.Buffer
	c := &cpioWriter{w: &buf}
	c.Dir("etc")
	c.File("etc/hello", 0o644, []byte("hi\n"))
	c.Symlink("etc/link", "hello")
	c.CharDev("console", 5, 1)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cpio", "-itv")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio: %v\n%s", err, out)
	}
	for _, want := range []string{"etc/hello", "etc/link -> hello", "5,", "console"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("listing lacks %q:\n%s", want, out)
		}
	}
}

func TestDefaultConfigParses(t *testing.T) {
	p := PathsIn("/var/lib/ringfence/images/default")
	cfg := DefaultConfig(p)
	if !strings.Contains(cfg, "kernel = \"/var/lib/ringfence/images/default/vmlinuz\"") {
		t.Fatal(cfg)
	}
	_ = os.WriteFile(filepath.Join(t.TempDir(), "x"), []byte(cfg), 0o644)
}

// DebianPathsIn and Built on fake files: Built needs every file and the
// current recipe.
func TestDebianPathsBuilt(t *testing.T) {
	dir := t.TempDir()
	p := DebianPathsIn(dir)
	if p.Dir != dir || p.Kernel != filepath.Join(dir, "vmlinuz") || p.Initrd != filepath.Join(dir, "initrd.img") ||
		p.Root != filepath.Join(dir, "root.img") || p.Recipe != filepath.Join(dir, "RECIPE") {
		t.Fatalf("paths: %+v", p)
	}
	if p.Built() {
		t.Fatal("Built on an empty directory")
	}
	for _, f := range []string{p.Kernel, p.Initrd, p.Root} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if p.Built() {
		t.Fatal("Built without a recipe")
	}
	os.WriteFile(p.Recipe, []byte("0123456789abcdef\n"), 0o644)
	if p.Built() {
		t.Fatal("Built with another recipe")
	}
	os.WriteFile(p.Recipe, []byte(debianRecipe()+"\n"), 0o644)
	if !p.Built() {
		t.Fatal("not Built with every file and the recipe")
	}
	os.Remove(p.Initrd)
	if p.Built() {
		t.Fatal("Built without the initrd")
	}
	os.WriteFile(p.Initrd, nil, 0o644)
	if p.Built() {
		t.Fatal("Built with an empty initrd")
	}
	// An image built by this recipe is found by BuildDebian without
	// root, tools or network.
	os.WriteFile(p.Initrd, []byte("x"), 0o644)
	if got, err := BuildDebian(dir, nil); err != nil || got != p {
		t.Fatalf("BuildDebian on a built image: %+v, %v", got, err)
	}
}

// The recipe covers the package list and the files written in the guest.
func TestDebianRecipe(t *testing.T) {
	r := debianRecipe()
	if len(r) != 16 || r != debianRecipe() {
		t.Fatalf("recipe %q is not a stable 16-digit hash", r)
	}
	saved := debianPackages
	debianPackages = append(append([]string(nil), saved...), "openssh-server")
	changed := debianRecipe()
	debianPackages = saved
	if changed == r {
		t.Fatal("the package list is not in the recipe")
	}
	files := debianFiles()
	if files["/etc/fstab"] != "# <file system> <mount point> <type> <options> <dump> <pass>\n/dev/xvda1 / ext4 defaults 0 1\n" ||
		files["/var/www/html/index.html"] != "ringfence-real-guest\n" || files["/etc/hostname"] != "debian12\n" {
		t.Fatalf("guest files: %q", files)
	}
}

// Builds the Debian image for real (minutes, needs root and
// deb.debian.org): RINGFENCE_DEBIAN_IMAGE=1 go test -timeout 30m -run
// TestBuildDebian ./internal/image/
func TestBuildDebian(t *testing.T) {
	if os.Getenv("RINGFENCE_DEBIAN_IMAGE") != "1" {
		t.Skip("set RINGFENCE_DEBIAN_IMAGE=1 to build the Debian image (minutes, network, root)")
	}
	dir := t.TempDir()
	p, err := BuildDebian(dir, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Built() {
		t.Fatal("not Built after BuildDebian")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".build-*")); len(left) != 0 {
		t.Fatalf("scratch left behind: %v", left)
	}
	// A whole-disk ext4 filesystem: its magic at 1080, no partition table.
	f, err := os.Open(p.Root)
	if err != nil {
		t.Fatal(err)
	}
	magic := make([]byte, 2)
	f.ReadAt(magic, 1080)
	f.Close()
	if magic[0] != 0x53 || magic[1] != 0xef {
		t.Fatalf("%s is not a bare ext4 filesystem (magic %x)", p.Root, magic)
	}
	for path, want := range map[string]string{
		"/etc/fstab":               "/dev/xvda1 / ext4 defaults 0 1",
		"/var/www/html/index.html": "ringfence-real-guest\n",
		"/etc/hostname":            "debian12\n",
	} {
		out, err := exec.Command("debugfs", "-R", "cat "+path, p.Root).Output()
		if err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("%s in the root filesystem: %q, %v", path, out, err)
		}
	}
	// Cached: a second call does nothing.
	if _, err := BuildDebian(dir, testWriter{t}); err != nil {
		t.Fatal(err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
