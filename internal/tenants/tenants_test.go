package tenants

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/store/memstore"
)

// TestCheckFile is the file rule for every kind of owner and place: a
// tenant's domain never learns whose a file it may not use is.
func TestCheckFile(t *testing.T) {
	dir := t.TempDir()
	pools := []api.Pool{
		{Name: "a", Dir: filepath.Join(dir, "a"), Tenant: "acme"},
		{Name: "b", Dir: filepath.Join(dir, "b"), Tenant: "beta"},
		{Name: "img", Dir: filepath.Join(dir, "img"), Shared: true},
		{Name: "host", Dir: filepath.Join(dir, "host")},
	}
	for _, p := range pools {
		os.MkdirAll(p.Dir, 0o700)
	}
	// A link in acme's pool to beta's volume is beta's volume.
	os.WriteFile(filepath.Join(dir, "b", "v"), nil, 0o600)
	os.Symlink(filepath.Join(dir, "b", "v"), filepath.Join(dir, "a", "link"))
	in := func(pool, f string) string { return filepath.Join(dir, pool, f) }
	for _, c := range []struct {
		tenant, path string
		write        bool
		want         string // "" = allowed
	}{
		{"acme", in("a", "v"), true, ""},
		{"acme", in("a", "sub/disk.raw"), true, ""}, // an import's directory in its pool
		{"acme", in("img", "vmlinuz"), false, ""},
		{"acme", in("img", "base.qcow2"), true, "only read"},
		{"acme", in("b", "v"), false, "not in one of tenant acme's pools"},
		{"acme", in("a", "link"), false, "not in one of tenant acme's pools"},
		{"acme", in("a", "../b/v"), false, "not in one of tenant acme's pools"},
		{"acme", in("host", "v"), false, "not in one of tenant acme's pools"},
		{"acme", "/etc/shadow", false, "not in one of tenant acme's pools"},
		{"acme", dir + "/ab/v", false, "not in one of tenant acme's pools"}, // a prefix of a pool's name is not the pool
		{"", in("host", "v"), true, ""},
		{"", in("img", "v"), true, ""},
		{"", "/var/lib/x.img", true, ""},
		{"", in("a", "v"), false, "pool a of tenant acme"},
	} {
		err := checkFile(pools, c.tenant, "disk xvda", c.path, c.write)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%q uses %s (write %v): %v, want %q", c.tenant, c.path, c.write, err, c.want)
		}
		if err != nil && c.tenant != "" && (strings.Contains(err.Error(), "beta") || strings.Contains(err.Error(), "pool b")) {
			t.Errorf("the refusal tells acme about beta: %v", err)
		}
	}
}

func TestCheckNetwork(t *testing.T) {
	nets := []api.Network{
		{Name: "anet", Bridge: "rfa", Tenant: "acme"},
		{Name: "bnet", Bridge: "rfb", Tenant: "beta"},
		{Name: "pub", Bridge: "br-pub", Shared: true},
		{Name: "lan", Bridge: "br0"},
	}
	for _, c := range []struct {
		tenant, bridge, want string
	}{
		{"acme", "anet", ""}, {"acme", "rfa", ""}, {"acme", "pub", ""}, {"acme", "br-pub", ""}, {"acme", "", ""},
		{"acme", "bnet", "not one of tenant acme's networks"}, {"acme", "rfb", "not one of tenant acme's networks"},
		{"acme", "lan", "not one of tenant acme's"}, {"acme", "br0", "not one of tenant acme's"}, {"acme", "xenbr0", "not one of tenant acme's"},
		{"", "lan", ""}, {"", "xenbr0", ""}, {"", "pub", ""}, {"", "anet", "of tenant acme"}, {"", "rfa", "of tenant acme"},
	} {
		err := checkNetwork(nets, c.tenant, c.bridge)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%q on %q: %v, want %q", c.tenant, c.bridge, err, c.want)
		}
	}
}

func TestDiskFits(t *testing.T) {
	const g = 1 << 30
	for _, c := range []struct {
		quota, used, add int64
		want             string
	}{
		{10 * g, 0, 10 * g, ""},
		{10 * g, 4 * g, 6 * g, ""},
		{10 * g, 4 * g, 6*g + 1, "quota is 10.0 GiB and its volumes and disks hold 4.0 GiB; volume create v asks 6.0 GiB, 6.0 GiB left"},
		{0, 0, 1, "quota is 0 B"},
		{g, 2 * g, 0, ""}, // nothing added: an oversold quota does not block what adds nothing
		{g, 2 * g, 1, "0 B left"},
	} {
		err := diskFits("acme", c.quota, c.used, c.add, "volume create v")
		if c.add == 0 {
			err = nil // diskFits is only asked for growth
		}
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, api.ErrInsufficient)) {
			t.Errorf("%+v: %v, want %q", c, err, c.want)
		}
	}
}

// TestManager: a tenant's life against the ledger and what it owns.
func TestManager(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	l := host.NewLedger(4096, 1024, 4, 1)
	m, err := New(ctx, st, l)
	if err != nil {
		t.Fatal(err)
	}
	var doms []api.Domain
	var toks []string
	m.Src = Sources{Domains: func() []api.Domain { return doms },
		Tokens: func(func(string) ([]store.KV, error), string) ([]string, error) { return toks, nil }}
	refused := func(err error, class error, want string) {
		t.Helper()
		if !errors.Is(err, class) || !strings.Contains(err.Error(), want) {
			t.Fatalf("%v, want %v saying %q", err, class, want)
		}
	}
	if _, err := m.Create(ctx, api.TenantRequest{Name: "acme", Quota: api.TenantQuota{MemoryMiB: 2048, VCPUs: 2, DiskBytes: 1 << 30}}); err != nil {
		t.Fatal(err)
	}
	_, err = m.Create(ctx, api.TenantRequest{Name: "beta", Quota: api.TenantQuota{MemoryMiB: 2048}})
	refused(err, api.ErrInsufficient, "tenant beta asks a reservation of 2048 MiB, 1024 MiB free")
	if _, err := m.Get(ctx, "beta"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("a refused tenant exists: %v", err)
	}
	_, err = m.Create(ctx, api.TenantRequest{Name: "acme"})
	refused(err, api.ErrConflict, "exists")
	_, err = m.Create(ctx, api.TenantRequest{Name: "../x"})
	refused(err, api.ErrInvalid, "not a valid tenant name")
	_, err = m.Create(ctx, api.TenantRequest{Name: "neg", Quota: api.TenantQuota{VCPUs: -1}})
	refused(err, api.ErrInvalid, "negative")

	// Quota changes: a field left out keeps its value.
	mem := 3072
	tn, err := m.Update(ctx, "acme", api.TenantUpdate{MemoryMiB: &mem})
	if err != nil || tn.Quota.MemoryMiB != 3072 || tn.Quota.VCPUs != 2 || tn.Quota.DiskBytes != 1<<30 {
		t.Fatalf("update: %+v %v", tn, err)
	}
	mem = 4000
	_, err = m.Update(ctx, "acme", api.TenantUpdate{MemoryMiB: &mem})
	refused(err, api.ErrInsufficient, "tenant acme asks a reservation of 4000 MiB")
	if tn, _ := m.Get(ctx, "acme"); tn.Quota.MemoryMiB != 3072 {
		t.Fatalf("a refused update changed the quota: %+v", tn.Quota)
	}
	if err := l.Reserve(api.LedgerEntry{Domain: "a1", Tenant: "acme", MemoryMiB: 1000, OverheadMiB: 100, VCPUs: 1}); err != nil {
		t.Fatal(err)
	}
	mem = 1000
	_, err = m.Update(ctx, "acme", api.TenantUpdate{MemoryMiB: &mem})
	refused(err, api.ErrConflict, "its quota cannot go below")
	if tn, _ := m.Get(ctx, "acme"); tn.Usage.MemoryMiB != 1100 || tn.Usage.VCPUs != 1 {
		t.Fatalf("usage: %+v", tn.Usage)
	}

	checkDelete(t, m, l, &doms, &toks)
	checkAdopted(t, m, st)
}

// checkDelete: refused while the tenant owns anything, its reservation
// kept; then gone, and its reservation with it.
func checkDelete(t *testing.T, m *Manager, l *host.Ledger, doms *[]api.Domain, toks *[]string) {
	ctx := context.Background()
	refused := func(err error, class error, want string) {
		t.Helper()
		if !errors.Is(err, class) || !strings.Contains(err.Error(), want) {
			t.Fatalf("%v, want %v saying %q", err, class, want)
		}
	}
	*doms = []api.Domain{{Spec: api.DomainSpec{Name: "a1"}, Tenant: "acme"}, {Spec: api.DomainSpec{Name: "h1"}}}
	*toks = []string{"acme-admin"}
	refused(m.Delete(ctx, "acme"), api.ErrConflict, "tenant acme still owns domains a1; tokens acme-admin")
	*doms, *toks = nil, nil
	refused(m.Delete(ctx, "acme"), api.ErrConflict, "tenant acme's domains hold 1100 MiB")
	l.Release("a1")
	if err := m.Delete(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if s := l.Snapshot(); len(s.Tenants) != 0 || s.FreeMiB != 3072 {
		t.Fatalf("the reservation outlived the tenant: %+v", s)
	}
	refused(m.Delete(ctx, "acme"), api.ErrNotFound, `no tenant named "acme"`)
}

// checkAdopted: a restart adopts the reservations from the store.
func checkAdopted(t *testing.T, m *Manager, st store.Store) {
	ctx := context.Background()
	if _, err := m.Create(ctx, api.TenantRequest{Name: "gamma", Quota: api.TenantQuota{MemoryMiB: 512, VCPUs: 1}}); err != nil {
		t.Fatal(err)
	}
	l2 := host.NewLedger(4096, 1024, 4, 1)
	if _, err := New(ctx, st, l2); err != nil {
		t.Fatal(err)
	}
	if lt, ok := l2.Tenant("gamma"); !ok || lt.MemoryMiB != 512 || lt.VCPUs != 1 {
		t.Fatalf("after a restart: %+v %v", lt, ok)
	}
}

func TestSize(t *testing.T) {
	for in, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 10 << 30: "10.0 GiB", 1536 << 20: "1.5 GiB"} {
		if got := Size(in); got != want {
			t.Errorf("Size(%d) = %q, want %q", in, got, want)
		}
	}
}
