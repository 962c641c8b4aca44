package host

import (
	"errors"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

// TestLedgerTenants walks the quota arithmetic step by step on one
// ledger: 4096 MiB of which the host keeps 1024 (3072 to give), 4 vCPUs.
// Each step is a reservation of a tenant, a domain of a tenant or of the
// host, or a release; a refusal must name the numbers and change nothing.
func TestLedgerTenants(t *testing.T) {
	l := NewLedger(4096, 1024, 4, 1)
	dom := func(name, tenant string, mem, vcpus int) api.LedgerEntry {
		return api.LedgerEntry{Domain: name, Tenant: tenant, MemoryMiB: mem, OverheadMiB: 100, VCPUs: vcpus}
	}
	type step struct {
		what string
		do   func() error
		// want is "" for success, else every part must be in the error;
		// class is its class.
		want  []string
		class error
		// free and freeV are the host's free memory and vCPUs afterwards.
		free, freeV int
	}
	steps := []step{
		{what: "acme reserves 1024 MiB, 2 vCPUs", do: func() error { return l.ReserveTenant("acme", 1024, 2) }, free: 2048, freeV: 2},
		{what: "beta reserves more than is free", do: func() error { return l.ReserveTenant("beta", 2100, 1) },
			want: []string{"tenant beta asks a reservation of 2100 MiB, 2048 MiB free of 4096", "held by tenant acme 1024 MiB"}, class: api.ErrInsufficient, free: 2048, freeV: 2},
		{what: "beta reserves 1024 MiB, 1 vCPU", do: func() error { return l.ReserveTenant("beta", 1024, 1) }, free: 1024, freeV: 1},
		{what: "a host domain fits what is left", do: func() error { return l.Reserve(dom("h1", "", 512, 1)) }, free: 412, freeV: 0},
		{what: "a host domain may not eat a tenant's reservation", do: func() error { return l.Reserve(dom("h2", "", 512, 0)) },
			want: []string{"memory: h2 asks 612 MiB (512 guest + 100 QEMU overhead), 412 MiB free of 4096", "tenant acme 1024 MiB", "tenant beta 1024 MiB", "h1 612 MiB"}, class: api.ErrInsufficient, free: 412, freeV: 0},
		{what: "acme's first domain draws from acme", do: func() error { return l.Reserve(dom("a1", "acme", 412, 1)) }, free: 412, freeV: 0},
		{what: "acme's second domain, over its memory", do: func() error { return l.Reserve(dom("a2", "acme", 512, 1)) },
			want: []string{"memory: tenant acme's quota is 1024 MiB and its domains hold 512 MiB (a1 512 MiB)", "a2 asks 612 MiB (512 guest + 100 QEMU overhead), 512 MiB left", "tenant set acme --memory"}, class: api.ErrInsufficient, free: 412, freeV: 0},
		{what: "acme's second domain, within", do: func() error { return l.Reserve(dom("a2", "acme", 412, 1)) }, free: 412, freeV: 0},
		{what: "acme's third domain, with its memory all held", do: func() error { return l.Reserve(dom("a3", "acme", 0, 1)) },
			want: []string{"memory: tenant acme's quota is 1024 MiB and its domains hold 1024 MiB"}, class: api.ErrInsufficient, free: 412, freeV: 0},
		{what: "beta's domain with more vCPUs than beta has", do: func() error { return l.Reserve(dom("b1", "beta", 100, 2)) },
			want: []string{"vcpus: tenant beta's quota is 1 vCPUs and its domains hold 0", "b1 asks 2, 1 left"}, class: api.ErrInsufficient, free: 412, freeV: 0},
		{what: "a domain of a tenant with no reservation", do: func() error { return l.Reserve(dom("x1", "ghost", 1, 1)) },
			want: []string{"tenant ghost, which has no reservation"}, class: api.ErrInsufficient, free: 412, freeV: 0},
		{what: "acme's quota below what its domains hold", do: func() error { return l.ReserveTenant("acme", 1000, 2) },
			want: []string{"tenant acme's domains hold 1024 MiB (a1 512 MiB, a2 512 MiB): its quota cannot go below"}, class: api.ErrConflict, free: 412, freeV: 0},
		{what: "acme raised past the host", do: func() error { return l.ReserveTenant("acme", 1500, 2) },
			want: []string{"tenant acme asks a reservation of 1500 MiB, 1436 MiB free"}, class: api.ErrInsufficient, free: 412, freeV: 0},
		{what: "acme raised within the host", do: func() error { return l.ReserveTenant("acme", 1400, 2) }, free: 36, freeV: 0},
		{what: "acme cannot be released while its domains run", do: func() error { return l.ReleaseTenant("acme") },
			want: []string{"tenant acme's domains hold 1024 MiB and 2 vCPUs"}, class: api.ErrConflict, free: 36, freeV: 0},
		{what: "beta released", do: func() error { return l.ReleaseTenant("beta") }, free: 1060, freeV: 1},
	}
	for _, s := range steps {
		err := s.do()
		switch {
		case len(s.want) == 0 && err != nil:
			t.Fatalf("%s: %v", s.what, err)
		case len(s.want) > 0 && err == nil:
			t.Fatalf("%s: admitted, want a refusal", s.what)
		case len(s.want) > 0 && !errors.Is(err, s.class):
			t.Fatalf("%s: %v, want class %v", s.what, err, s.class)
		}
		for _, w := range s.want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("%s: %q does not say %q", s.what, err, w)
			}
		}
		if snap := l.Snapshot(); snap.FreeMiB != s.free || snap.VCPUsFree != s.freeV {
			t.Fatalf("%s: free %d MiB, %d vCPUs; want %d, %d", s.what, snap.FreeMiB, snap.VCPUsFree, s.free, s.freeV)
		}
	}
	snap := l.Snapshot()
	if len(snap.Tenants) != 1 || snap.Tenants[0] != (api.LedgerTenant{Tenant: "acme", MemoryMiB: 1400, VCPUs: 2, UsedMemoryMiB: 1024, UsedVCPUs: 2}) {
		t.Fatalf("tenants in the snapshot: %+v", snap.Tenants)
	}
	if err := l.Oversold(); err != nil {
		t.Fatalf("oversold: %v", err)
	}
}

// TestLedgerTenantAdopt: what a restart finds is counted whatever it
// says, and an oversell it makes is reported (tenants' reservations and
// domains alike).
func TestLedgerTenantAdopt(t *testing.T) {
	for _, c := range []struct {
		name     string
		tenants  map[string]int
		domains  []api.LedgerEntry
		oversold string
	}{
		{"fits", map[string]int{"acme": 1000}, []api.LedgerEntry{{Domain: "a1", Tenant: "acme", MemoryMiB: 900}}, ""},
		{"a tenant's domains beyond its reservation count as themselves", map[string]int{"acme": 1000},
			[]api.LedgerEntry{{Domain: "a1", Tenant: "acme", MemoryMiB: 1500}, {Domain: "h", MemoryMiB: 1600}}, "oversold by 28 MiB"},
		{"reservations alone", map[string]int{"acme": 2000, "beta": 1100}, nil, "oversold by 28 MiB"},
		{"a domain of a tenant with no reservation", nil, []api.LedgerEntry{{Domain: "a1", Tenant: "gone", MemoryMiB: 3100}}, "a1 3100 MiB"},
	} {
		l := NewLedger(4096, 1024, 8, 1)
		for n, mem := range c.tenants {
			l.AdoptTenant(n, mem, 1)
		}
		for _, e := range c.domains {
			l.Adopt(e)
		}
		err := l.Oversold()
		if (c.oversold == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.oversold) {
			t.Errorf("%s: oversold %v, want %q", c.name, err, c.oversold)
		}
	}
}
