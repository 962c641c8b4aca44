package ha

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestGuardCommand: the small guard binary beside ringfence is used when
// it is an executable file; otherwise ringfence itself with the verb.
// Both carry the verb (GuardPID recognises the guard by it).
func TestGuardCommand(t *testing.T) {
	for _, tc := range []struct {
		name   string
		helper os.FileMode // 0: none
		dir    bool        // the helper's name is a directory
		want   string      // "helper" or "self"
	}{
		{"installed", 0o755, false, "helper"},
		{"absent", 0, false, "self"},
		{"not executable", 0o644, false, "self"},
		{"a directory", 0, true, "self"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := t.TempDir()
			self := filepath.Join(bin, "ringfence")
			helper := filepath.Join(bin, GuardHelper)
			switch {
			case tc.dir:
				os.Mkdir(helper, 0o755)
			case tc.helper != 0:
				os.WriteFile(helper, []byte("#!/bin/sh\n"), tc.helper)
			}
			got := GuardCommand(self, "/state/ha")
			want := []string{self, GuardVerb, "/state/ha"}
			if tc.want == "helper" {
				want[0] = helper
			}
			if !slices.Equal(got, want) {
				t.Fatalf("GuardCommand = %v, want %v", got, want)
			}
		})
	}
}
