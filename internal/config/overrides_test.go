package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOverrides(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.cfg")
	os.WriteFile(path, []byte("name = \"web\"\nkernel = \"/boot/vmlinuz\"\nmemory = 256\nvcpus = 1\nmaxvcpus = 2"), 0o644)
	for _, tc := range []struct {
		args    []string
		mem     int
		vcpus   int
		wantErr string
	}{
		{nil, 256, 1, ""},
		{[]string{"memory=512"}, 512, 1, ""},
		{[]string{"memory=512; vcpus=2", "memory = 384"}, 384, 2, ""},
		{[]string{"memory=lots"}, 0, 0, `argument 1 "memory=lots":1:`},
		{[]string{"memory"}, 0, 0, `argument 1 "memory":1:1: expected KEY=VALUE`},
		{[]string{"vcpus=1", "cpu_weight=\"x\""}, 0, 0, `argument 2 "cpu_weight=\"x\""`},
	} {
		spec, _, err := LoadOverrides(path, tc.args)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want one containing %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || spec.MemoryMiB != tc.mem || spec.VCPUs != tc.vcpus {
			t.Errorf("%q: memory %d vcpus %d err %v, want %d %d", tc.args, spec.MemoryMiB, spec.VCPUs, err, tc.mem, tc.vcpus)
		}
	}
}
