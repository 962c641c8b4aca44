package safefile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A symlink planted at the target is replaced, not followed; a pre-made
// world-writable file at the old ".part" name is left alone; the result
// is 0600 and ours.
func TestCreateIgnoresPlantedFiles(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("root's file"), 0o644)
	target := filepath.Join(dir, "out.save")
	if err := os.Symlink(victim, target); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, target+".part"); err != nil {
		t.Fatal(err)
	}
	f, err := Create(target)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(f.Name()), ".out.save.") {
		t.Fatalf("temp name %s", f.Name())
	}
	f.WriteString("guest RAM")
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "root's file" {
		t.Fatalf("the symlink's target was written: %q", b)
	}
	fi, err := os.Lstat(target)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("target is %v (%v), want a regular 0600 file", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(target); string(b) != "guest RAM" {
		t.Fatalf("content %q", b)
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	f, err := Create(filepath.Join(dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v with umask 0", fi.Mode())
	}
	f.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
	if _, err := Create(dir + "/"); err == nil {
		t.Fatal("a path naming no file was accepted")
	}
}
