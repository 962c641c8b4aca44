package imagelock

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Two writers conflict, a reader and a writer conflict, two readers do
// not; a lock lives as long as the open file description.
func TestLocks(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.img")
	os.WriteFile(p, make([]byte, 1<<20), 0o600)
	open := func() *os.File {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	a, b := open(), open()
	if err := Lock(a, true); err != nil {
		t.Fatal(err)
	}
	var iu *ErrInUse
	if err := Lock(b, true); !errors.As(err, &iu) {
		t.Fatalf("second writer: %v", err)
	}
	if err := Test(b, false); !errors.As(err, &iu) || !strings.Contains(err.Error(), "open for write") {
		t.Fatalf("reader beside a writer: %v", err)
	}
	a.Close()
	if err := Lock(b, false); err != nil {
		t.Fatalf("reader after the writer closed: %v", err)
	}
	c := open()
	if err := Lock(c, false); err != nil {
		t.Fatalf("two readers: %v", err)
	}
	if err := Test(c, true); err == nil {
		t.Fatal("a writer beside readers was allowed")
	}
	b.Close()
	c.Close()
}

// A real QEMU sees our locks and we see a real QEMU's: a QEMU cannot open
// an image we hold for writing, and our check refuses an image a QEMU
// writes.
func TestQEMUInterop(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "d.img")
	os.WriteFile(p, make([]byte, 1<<20), 0o600)
	args := func(img, ro string) []string {
		return []string{"-machine", "q35,accel=tcg", "-nodefaults", "-display", "none", "-S",
			"-drive", "file=" + img + ",format=raw,if=none,id=d0,readonly=" + ro, "-device", "virtio-blk-pci,drive=d0"}
	}
	f, _ := os.OpenFile(p, os.O_RDWR, 0)
	if err := Lock(f, true); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(qemu, append(args(p, "on"), "-daemonize", "-pidfile", filepath.Join(dir, "x.pid"))...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "lock") {
		t.Fatalf("QEMU opened an image we hold for writing: %v\n%s", err, out)
	}
	f.Close()

	q := filepath.Join(dir, "q.img")
	os.WriteFile(q, make([]byte, 1<<20), 0o600)
	pid := filepath.Join(dir, "q.pid")
	if out, err := exec.Command(qemu, append(args(q, "off"), "-daemonize", "-pidfile", pid)...).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	defer func() {
		b, _ := os.ReadFile(pid)
		exec.Command("kill", strings.TrimSpace(string(b))).Run()
	}()
	var iu *ErrInUse
	if err := TestPath(q, false); !errors.As(err, &iu) {
		t.Fatalf("reading an image a QEMU writes: %v", err)
	}
	if err := TestPath(q, true); !errors.As(err, &iu) {
		t.Fatalf("writing an image a QEMU writes: %v", err)
	}
}
