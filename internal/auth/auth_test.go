package auth

import "testing"

func TestRoles(t *testing.T) {
	for _, c := range []struct {
		r  Role
		p  Perm
		ok bool
	}{
		{Admin, HostManage, true}, {Admin, PeerMigrate, false},
		{Operator, DomainCreate, true}, {Operator, HostManage, false}, {Operator, TokenManage, false}, {Operator, NetworkManage, false},
		{Auditor, DomainRead, true}, {Auditor, DomainOperate, false}, {Auditor, AuditRead, true},
		{TenantAdmin, DomainCreate, true}, {TenantAdmin, HostRead, false}, {TenantAdmin, DomainMigrate, false},
		{TenantUser, DomainConsole, true}, {TenantUser, DomainCreate, false}, {TenantUser, StorageRead, false},
		{TenantAdmin, TenantRead, true}, {TenantAdmin, TenantManage, false}, {TenantUser, TenantRead, true},
		{Admin, TenantManage, true}, {Operator, TenantManage, false}, {Auditor, TenantRead, true}, {PeerHost, TenantRead, false},
		{PeerHost, PeerMigrate, true}, {PeerHost, DomainRead, false},
		{Joiner, PeerJoin, true}, {Joiner, PeerSync, false},
		{Role("nobody"), DomainRead, false},
	} {
		if got := c.r.Can(c.p); got != c.ok {
			t.Errorf("%s can %s: %v, want %v", c.r, c.p, got, c.ok)
		}
	}
	// Every user role may read what the API offers (GET /1.0); the peer
	// listener's callers may not.
	for _, r := range UserRoles() {
		if !r.Can(APIRead) {
			t.Errorf("%s cannot read the API's extensions", r)
		}
	}
	if PeerHost.Can(APIRead) || Joiner.Can(APIRead) {
		t.Error("a peer-listener role may read the API's extensions")
	}
	for r, ps := range rolePerms {
		for _, p := range ps {
			found := false
			for _, q := range Perms() {
				found = found || p == q
			}
			if !found {
				t.Errorf("%s holds %s, which Perms() does not list", r, p)
			}
		}
	}
}

func TestParseRole(t *testing.T) {
	for _, c := range []struct {
		role, tenant string
		ok           bool
	}{
		{"admin", "", true}, {"admin", "acme", false}, {"tenant-user", "acme", true},
		{"tenant-admin", "", false}, {"root", "", false}, {"peer-host", "", false},
	} {
		if _, err := ParseRole(c.role, c.tenant); (err == nil) != c.ok {
			t.Errorf("ParseRole(%q, %q): %v", c.role, c.tenant, err)
		}
	}
	p := Principal{Role: TenantUser, Tenant: "acme"}
	if !p.Sees("acme") || p.Sees("other") || p.Sees("") {
		t.Error("a tenant user sees beyond its tenant")
	}
	if a := (Principal{Role: Auditor}); !a.Sees("acme") || !a.Sees("") {
		t.Error("a host-wide role does not see everything")
	}
}
