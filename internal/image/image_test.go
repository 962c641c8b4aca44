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
