package launch

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestPrefixAndCommand(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "ringfence")
	if got := Prefix(self); !reflect.DeepEqual(got, []string{self, Verb}) {
		t.Fatalf("without the helper: %v", got)
	}
	helper := filepath.Join(dir, Helper)
	os.WriteFile(helper, []byte("#!/bin/sh\n"), 0o755)
	if got := Prefix(self); !reflect.DeepEqual(got, []string{helper}) {
		t.Fatalf("with the helper: %v", got)
	}
	got := Command([]string{helper}, []string{"/cg/a/cgroup.procs"}, []string{"qemu", "-S"})
	want := []string{helper, "--cgroup", "/cg/a/cgroup.procs", "--", "qemu", "-S"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("command %v, want %v", got, want)
	}
}
