package cluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

func TestPlace(t *testing.T) {
	up := func(h string, mib, vcpus int) Room { return Room{Host: h, FreeMiB: mib, VCPUsFree: vcpus, Alive: true} }
	need := Need{Name: "g1", MemMiB: 200, VCPUs: 2}
	for _, tc := range []struct {
		what  string
		rooms []Room
		want  string // the hosts in order, or the error's words
	}{
		{"most free memory first", []Room{up("a", 300, 2), up("b", 900, 4), up("c", 500, 8)}, "[b c a]"},
		{"ties by name", []Room{up("b", 500, 2), up("a", 500, 2)}, "[a b]"},
		{"exactly enough fits", []Room{up("a", 200, 2)}, "[a]"},
		{"memory short", []Room{up("a", 199, 8)}, "a 199 MiB, 8 vCPUs free"},
		{"vCPUs short", []Room{up("a", 4096, 1)}, "a 4096 MiB, 1 vCPUs free"},
		{"down and witness never chosen", []Room{{Host: "a", FreeMiB: 9999, VCPUsFree: 9}, {Host: "w", FreeMiB: 9999, VCPUsFree: 9, Alive: true, Witness: true}, up("c", 10, 1)},
			"a down; w witness (no domains); c 10 MiB, 1 vCPUs free"},
		{"an evacuated host is passed over", []Room{{Host: "a", FreeMiB: 9999, VCPUsFree: 9, Alive: true, Excluded: true}, up("b", 300, 2)}, "[b]"},
		{"no hosts", nil, "no host of the cluster has room for g1 (200 MiB with QEMU overhead, 2 vCPUs)"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			got, err := Place(need, tc.rooms)
			if err != nil {
				if !errors.Is(err, api.ErrInsufficient) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want ErrInsufficient saying %q", err, tc.want)
				}
				return
			}
			if fmt.Sprint(got) != tc.want {
				t.Fatalf("placed on %v, want %s", got, tc.want)
			}
		})
	}
}
