package cluster

import (
	"fmt"
	"strings"
	"testing"
)

func TestPlanHA(t *testing.T) {
	up := func(h string, mib, vcpus int) Room { return Room{Host: h, FreeMiB: mib, VCPUsFree: vcpus, Alive: true} }
	ha := func(host, name string, mib int) HADomain {
		return HADomain{Host: host, Need: Need{Name: name, MemMiB: mib, VCPUs: 1}}
	}
	for _, tc := range []struct {
		what  string
		rooms []Room
		doms  []HADomain
		ok    bool
		want  string // each host's placement or why, in order
	}{
		{"no HA domains", []Room{up("a", 100, 1), up("b", 100, 1)}, nil, true, "a:map[] b:map[]"},
		{"fits on the other", []Room{up("a", 100, 1), up("b", 500, 2)}, []HADomain{ha("a", "g1", 300)}, true, "a:map[g1:b] b:map[]"},
		{"largest first, spread", []Room{up("a", 0, 0), up("b", 400, 4), up("c", 400, 4)},
			[]HADomain{ha("a", "s", 100), ha("a", "l", 350), ha("a", "m", 250)}, true, "a:map[l:b m:c s:c] b:map[] c:map[]"},
		{"one host: nowhere to go", []Room{up("a", 900, 8)}, []HADomain{ha("a", "g1", 100)}, false,
			"a:if a failed, g1 (100 MiB, 1 vCPUs) would fit on no other host (no other host)"},
		{"too big for the survivor", []Room{up("a", 900, 8), up("b", 200, 8)}, []HADomain{ha("a", "g1", 300)}, false,
			"a:if a failed, g1 (300 MiB, 1 vCPUs) would fit on no other host (b 200 MiB, 8 vCPUs free) b:map[]"},
		{"a witness and a down host take nothing", []Room{up("a", 900, 8), {Host: "w", FreeMiB: 9999, VCPUsFree: 9, Alive: true, Witness: true}, {Host: "d", FreeMiB: 9999, VCPUsFree: 9}},
			[]HADomain{ha("a", "g1", 100)}, false, "a:if a failed, g1 (100 MiB, 1 vCPUs) would fit on no other host (w witness; d down)"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			p := PlanHA(tc.rooms, tc.doms)
			var got []string
			for _, h := range p.Hosts {
				if h.OK {
					got = append(got, fmt.Sprintf("%s:%v", h.Host, h.Placement))
				} else {
					got = append(got, h.Host+":"+h.Why)
				}
			}
			if p.OK != tc.ok || strings.Join(got, " ") != tc.want {
				t.Fatalf("plan ok=%v %q, want ok=%v %q", p.OK, strings.Join(got, " "), tc.ok, tc.want)
			}
		})
	}
}
