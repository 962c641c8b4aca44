package daemon

import (
	"slices"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/host"
)

// TestTenantLists: what each role's lists hold. A tenant sees its own
// objects and the host's shared pools and networks (not their ports: other
// tenants' taps); its stats are its domains', with its quota as the
// memory; host-wide roles see everything as it is.
func TestTenantLists(t *testing.T) {
	ledger := host.NewLedger(8192, 1024, 4, 1)
	ledger.ReserveTenant("acme", 1000, 2)
	ledger.Reserve(api.LedgerEntry{Domain: "a1", Tenant: "acme", MemoryMiB: 200, OverheadMiB: 100, VCPUs: 1})
	s := &Server{ledger: ledger}
	ds := []api.Domain{{Spec: api.DomainSpec{Name: "a1"}, Tenant: "acme"}, {Spec: api.DomainSpec{Name: "b1"}, Tenant: "beta"}, {Spec: api.DomainSpec{Name: "h1"}}}
	pools := []api.Pool{{Name: "pa", Tenant: "acme"}, {Name: "pb", Tenant: "beta"}, {Name: "img", Shared: true}, {Name: "host"}}
	nets := []api.Network{{Name: "na", Tenant: "acme", Ports: []string{"vif1.0"}}, {Name: "nb", Tenant: "beta", Ports: []string{"vif2.0"}},
		{Name: "pub", Shared: true, Ports: []string{"vif2.1"}}, {Name: "lan", Ports: []string{"vif3.0"}}}
	st := api.Stats{MemTotalKiB: 8 << 30, MemFreeKiB: 4 << 30, Domains: []api.DomainStats{{Name: "a1", Tenant: "acme"}, {Name: "b1", Tenant: "beta"}}}
	for _, c := range []struct {
		p                           auth.Principal
		domains, pools, nets, stats []string
		ports                       int // ports shown, over every network seen
		memKiB                      int64
	}{
		{as(auth.TenantUser), []string{"a1"}, []string{"pa", "img"}, []string{"na", "pub"}, []string{"a1"}, 1, 1000 << 10},
		{auth.Principal{Role: auth.TenantAdmin, Tenant: "beta"}, []string{"b1"}, []string{"pb", "img"}, []string{"nb", "pub"}, []string{"b1"}, 1, 0},
		{as(auth.Auditor), []string{"a1", "b1", "h1"}, []string{"pa", "pb", "img", "host"}, []string{"na", "nb", "pub", "lan"}, []string{"a1", "b1"}, 4, 8 << 30},
	} {
		var gotD, gotP, gotN, gotS []string
		for _, d := range seenDomains(c.p, ds) {
			gotD = append(gotD, d.Spec.Name)
		}
		for _, p := range seenPools(c.p, pools) {
			gotP = append(gotP, p.Name)
		}
		ports := 0
		for _, n := range seenNetworks(c.p, nets) {
			gotN = append(gotN, n.Name)
			ports += len(n.Ports)
		}
		sst := s.seenStats(c.p, st)
		for _, d := range sst.Domains {
			gotS = append(gotS, d.Name)
		}
		if !slices.Equal(gotD, c.domains) || !slices.Equal(gotP, c.pools) || !slices.Equal(gotN, c.nets) || !slices.Equal(gotS, c.stats) || ports != c.ports || sst.MemTotalKiB != c.memKiB {
			t.Errorf("%s: domains %v, pools %v, networks %v (%d ports), stats %v (memory %d KiB)", c.p, gotD, gotP, gotN, ports, gotS, sst.MemTotalKiB)
		}
	}
}
