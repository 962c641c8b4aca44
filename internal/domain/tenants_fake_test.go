package domain

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

// fakeTenancy refuses tenant acme everything under /beta/ and bridge
// bnet, as internal/tenants' rule would another tenant's pool and
// network.
type fakeTenancy struct{}

func (f *fakeTenancy) CheckFile(tenant, what, path string, write bool) error {
	if tenant == "acme" && strings.HasPrefix(path, "/beta/") {
		return api.Errorf(api.ErrInvalid, "%s: %s is not in one of tenant acme's pools", what, path)
	}
	return nil
}

func (f *fakeTenancy) CheckNetwork(tenant, bridge string) error {
	if tenant == "acme" && bridge == "bnet" {
		return api.Errorf(api.ErrInvalid, "bridge bnet is not one of tenant acme's networks")
	}
	return nil
}

func (f *fakeTenancy) CheckDisk(context.Context, string, int64, string) error { return nil }

// TestTenantDomains: a tenant's domain draws from its tenant's
// reservation (a refusal leaves nothing), is found by name, domid and
// UUID as its tenant's, keeps its tenant in every event (its destroy's
// too), in stats, across a clone and a daemon restart, and gets only
// what the tenants' rule allows, asked before the file is looked at.
func TestTenantDomains(t *testing.T) {
	rec, ten := &recorder{}, &fakeTenancy{}
	h := newFakeHost(t, func(o *Options) { o.Events = rec; o.Tenancy = ten })
	ctx := context.Background()
	if err := h.ledger.ReserveTenant("acme", 500, 2); err != nil {
		t.Fatal(err)
	}
	spec := h.spec("a1", "", "", "")
	spec.UUID = "6f1d2c3b-0000-4000-8000-00000000a001"
	if _, err := h.m.Create(ctx, api.CreateRequest{Spec: spec, Tenant: "acme"}); err != nil {
		t.Fatal(err)
	}
	h.create(h.spec("h1", "", "", ""))
	a1 := h.get("a1")
	for _, c := range []struct{ name, want string }{
		{"a1", "acme"}, {strconv.Itoa(a1.ID), "acme"}, {strings.ToUpper(spec.UUID), "acme"}, {"h1", ""},
	} {
		if got, err := h.m.Owner(c.name); err != nil || got != c.want {
			t.Errorf("Owner(%q) = %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	if _, err := h.m.Owner("nope"); err == nil || err.Error() != NotFound("nope").Error() {
		t.Errorf("Owner of nothing: %v", err)
	}
	if a1.Tenant != "acme" || h.get("h1").Tenant != "" {
		t.Errorf("views: a1 %q, h1 %q", a1.Tenant, h.get("h1").Tenant)
	}
	lt, _ := h.ledger.Tenant("acme")
	if lt.UsedMemoryMiB == 0 {
		t.Fatalf("a1 does not draw from acme's reservation: %+v", lt)
	}
	// Room for a1 and a little more, not for a second.
	if err := h.ledger.ReserveTenant("acme", lt.UsedMemoryMiB+10, 2); err != nil {
		t.Fatal(err)
	}
	for _, s := range h.m.Sample(ctx).Domains {
		if want := map[string]string{"a1": "acme", "h1": ""}[s.Name]; s.Tenant != want {
			t.Errorf("stats of %s: tenant %q", s.Name, s.Tenant)
		}
	}

	// Over the quota: refused with the tenant's numbers, nothing left.
	_, err := h.m.Create(ctx, api.CreateRequest{Spec: h.spec("a2", "", "", ""), Tenant: "acme"})
	if !errors.Is(err, api.ErrInsufficient) || !strings.Contains(err.Error(), "tenant acme's quota is "+strconv.Itoa(lt.UsedMemoryMiB+10)+" MiB") {
		t.Fatalf("over acme's quota: %v", err)
	}
	h.gone("a2")
	// The tenants' rule before the file is looked at (it does not exist).
	bad := h.spec("a3", "", "", "")
	bad.Disks = []api.Disk{{Target: "/beta/v", VDev: "xvda"}}
	if _, err := h.m.Create(ctx, api.CreateRequest{Spec: bad, Tenant: "acme"}); err == nil || !strings.Contains(err.Error(), "not in one of tenant acme's pools") {
		t.Fatalf("another tenant's file: %v", err)
	}
	bad = h.spec("a3", "", "", "")
	bad.Vifs = []api.Vif{{Bridge: "bnet", MAC: "00:16:3e:00:00:01"}}
	if _, err := h.m.Create(ctx, api.CreateRequest{Spec: bad, Tenant: "acme"}); err == nil || !strings.Contains(err.Error(), "not one of tenant acme's networks") {
		t.Fatalf("another tenant's network: %v", err)
	}
	h.gone("a3")

	// A clone keeps its source's tenant (and is refused by its quota).
	if _, err := h.m.Clone(ctx, "a1", "a4", CloneOptions{}); !errors.Is(err, api.ErrInsufficient) || !strings.Contains(err.Error(), "tenant acme") {
		t.Fatalf("a clone of a1 beyond acme's quota: %v", err)
	}
	if _, err := h.m.Clone(ctx, "h1", "h2", CloneOptions{Tenant: "ghost"}); err == nil || !strings.Contains(err.Error(), "tenant ghost, which has no reservation") {
		t.Fatalf("a clone into a tenant with no reservation: %v", err)
	}

	checkTenantEvents(t, h, rec)
}

// checkTenantEvents: events carry the tenant, the destroy's included
// (the domain is gone by then); a definition keeps its tenant across a
// restart of the manager.
func checkTenantEvents(t *testing.T, h *fakeHost, rec *recorder) {
	ctx := context.Background()
	if err := h.m.Destroy(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	tenants := map[string]string{}
	rec.mu.Lock()
	for _, ev := range rec.evs {
		tenants[ev.Domain+" "+ev.Action] = ev.Tenant
	}
	rec.mu.Unlock()
	for ev, want := range map[string]string{"a1 created": "acme", "a1 destroyed": "acme", "h1 created": ""} {
		if got, ok := tenants[ev]; !ok || got != want {
			t.Errorf("event %s: tenant %q (seen %v), want %q", ev, got, ok, want)
		}
	}
	if lt, _ := h.ledger.Tenant("acme"); lt.UsedMemoryMiB != 0 {
		t.Errorf("acme's reservation still held after the destroy: %+v", lt)
	}

	if _, err := h.m.Define(ctx, h.spec("d1", "", "", ""), "acme"); err != nil {
		t.Fatal(err)
	}
	m2 := New(h.o)
	if err := m2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := m2.Owner("d1"); err != nil || got != "acme" {
		t.Errorf("after a restart d1 is %q's (%v)", got, err)
	}
}

// TestTenantRenameSaveRestore: a renamed domain stays its tenant's (its
// view, record, ledger entry and event); a save image carries the
// tenant, and a restore by a tenant's principal takes only an image of
// its own tenant's domain (an upload's header is the client's word),
// which draws from its reservation again.
func TestTenantRenameSaveRestore(t *testing.T) {
	rec := &recorder{}
	h := newFakeHost(t, func(o *Options) { o.Events = rec; o.Tenancy = &fakeTenancy{} })
	ctx := context.Background()
	if err := h.ledger.ReserveTenant("acme", 500, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Create(ctx, api.CreateRequest{Spec: h.spec("a1", "", "", ""), Tenant: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Rename(ctx, "a1", "a2"); err != nil {
		t.Fatal(err)
	}
	r, _ := h.record("a2")
	lt, _ := h.ledger.Tenant("acme")
	if got, err := h.m.Owner("a2"); err != nil || got != "acme" || r.Tenant != "acme" || h.get("a2").Tenant != "acme" || lt.UsedMemoryMiB == 0 {
		t.Fatalf("renamed: owner %q (%v), record %q, view %q, acme holds %d MiB", got, err, r.Tenant, h.get("a2").Tenant, lt.UsedMemoryMiB)
	}
	rec.mu.Lock()
	for _, ev := range rec.evs {
		if ev.Action == api.EvRenamed && ev.Tenant != "acme" {
			t.Errorf("the rename's event is for %q", ev.Tenant)
		}
	}
	rec.mu.Unlock()

	dir := t.TempDir()
	img, hostImg := dir+"/a2.save", dir+"/h1.save"
	if err := h.m.Save(ctx, "a2", img, false); err != nil {
		t.Fatal(err)
	}
	h.create(h.spec("h1", "", "", ""))
	if err := h.m.Save(ctx, "h1", hostImg, false); err != nil {
		t.Fatal(err)
	}
	if lt, _ := h.ledger.Tenant("acme"); lt.UsedMemoryMiB != 0 {
		t.Fatalf("acme still holds %d MiB after the save", lt.UsedMemoryMiB)
	}
	for _, c := range []struct{ path, tenant string }{{img, "beta"}, {hostImg, "acme"}} {
		f, err := os.Open(c.path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = h.m.RestoreFrom(ctx, f, "the upload", false, c.tenant)
		f.Close()
		if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "the upload holds a domain that is not tenant "+c.tenant+"'s") {
			t.Errorf("restore of %s by tenant %s: %v", c.path, c.tenant, err)
		}
	}
	h.gone("h1")
	if _, err := h.m.Restore(ctx, img, false, "acme"); err != nil {
		t.Fatal(err)
	}
	lt, _ = h.ledger.Tenant("acme")
	if got, _ := h.m.Owner("a2"); got != "acme" || lt.UsedMemoryMiB == 0 {
		t.Fatalf("restored a2 is %q's; acme holds %d MiB", got, lt.UsedMemoryMiB)
	}
}
