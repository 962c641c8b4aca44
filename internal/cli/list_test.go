package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

// TestPrintListTenants: list's Tenant column appears once a domain has a
// tenant ("-" for the host's), in both layouts; the short one stays
// within 80 columns.
func TestPrintListTenants(t *testing.T) {
	host := api.Domain{Spec: api.DomainSpec{Name: "h1", MemoryMiB: 128, VCPUs: 1, UUID: "6f1d2c3b-0000-4000-8000-0000000000a1"}, ID: 1, PID: 10, Flags: "-b----"}
	ten := host
	ten.Spec.Name, ten.Tenant, ten.ID = "a-long-domain-name-of-24", "acme-corp", 2
	short := ten // -v fits 80 columns with names of 4 and a short tenant
	short.Spec.Name, short.Tenant = "web1", "acme"
	for _, c := range []struct {
		what    string
		ds      []api.Domain
		verbose bool
		tenant  bool // a Tenant column
		max     int  // the widest line allowed
	}{
		{"host only", []api.Domain{host}, false, false, 80},
		{"host only, -v", []api.Domain{host}, true, false, 80},
		{"a tenant's", []api.Domain{host, ten}, false, true, 80},
		{"a tenant's, -v, short names", []api.Domain{host, short}, true, true, 80},
		{"a tenant's, -v, a long name", []api.Domain{host, ten}, true, true, 24 + 1 + 9 + 69},
	} {
		var b bytes.Buffer
		printList(&b, c.ds, c.verbose)
		lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
		if got := strings.Contains(lines[0], "Tenant"); got != c.tenant {
			t.Errorf("%s: Tenant column %v:\n%s", c.what, got, b.String())
		}
		for _, l := range lines {
			if len(l) > c.max {
				t.Errorf("%s: %d columns: %q", c.what, len(l), l)
			}
		}
		if c.tenant && (!strings.Contains(b.String(), "acme") || !strings.Contains(lines[1], " - ")) {
			t.Errorf("%s: the tenants are not shown:\n%s", c.what, b.String())
		}
	}
}
