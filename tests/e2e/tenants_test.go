package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/image"
)

// tenantEnv is a daemon with two tenants, ta and tb, and a remote of each
// (a tenant-admin token).
type tenantEnv struct {
	*Env
	r       remoteCLI
	addr    string
	secrets map[string]string // token secret by remote name: ta, tb, admin
	http    *http.Client
}

// bUUID is b1's UUID: another tenant's domain by UUID.
const bUUID = "6f1d2c3b-0000-4000-8000-0000000000b1"

// TestTenants: two tenants with quotas, each a tenant-admin token and a
// guest created over the remote. Tenant ta sees only its own guest: tb's
// answers 404 by name, domid and UUID exactly as a domain that does not
// exist (info, console, destroy, stats, rename, save, export), and
// nothing of it changes; ta renames, saves to its machine and restores
// its own guest, which stays ta's; ta's events carry nothing of tb's. An over-quota create is refused with the
// tenant's numbers and leaves nothing; a host create that would eat into
// the tenants' reservations is refused with the host's; a tenant that
// owns a domain or a token cannot be deleted, and once it owns nothing
// its reservation goes back to the host.
func TestTenants(t *testing.T) {
	te := newTenantEnv(t)
	te.createGuests()
	te.checkIsolation()
	te.checkXlVerbs()
	te.checkEvents()
	te.checkQuotas()
	te.checkDelete()
}

func newTenantEnv(t *testing.T) *tenantEnv {
	mem, err := host.ReadMemory()
	if err != nil {
		t.Fatal(err)
	}
	// The ledger gives domains 1200 MiB: two tenants of 400 leave 400.
	port := 42000 + os.Getpid()%20000
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	e := NewEnv(t, "--api-listen", addr, guestStorage(), "--reserve-mem", fmt.Sprint(mem.TotalMiB-1200), "--vcpu-ratio", "4")
	te := &tenantEnv{Env: e, addr: addr, secrets: map[string]string{},
		r:    remoteCLI{t: t, e: e, cfg: filepath.Join(e.Dir, "remotes.json")},
		http: peerHTTP(t, e.Netns, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})}
	if res := e.RF("token", "create", "x", "--role", "tenant-admin", "--tenant", "ta"); res.Code == 0 || !strings.Contains(res.Stderr, `no tenant named "ta"`) {
		t.Fatalf("a token of a tenant that does not exist: %+v", res)
	}
	if res := e.RF("tenant", "create", "huge", "--memory", "2000"); res.Code == 0 || !strings.Contains(res.Stderr, "tenant huge asks a reservation of 2000 MiB, 1200 MiB free") {
		t.Fatalf("a tenant beyond the host: %+v", res)
	}
	for _, tn := range []string{"ta", "tb"} {
		e.MustRF("tenant", "create", tn, "--memory", "400", "--vcpus", "1", "--disk", "1G", "--transfer", "10G")
		te.secrets[tn] = strings.TrimSpace(e.MustRF("token", "create", tn+"-admin", "--role", "tenant-admin", "--tenant", tn))
		te.r.must("remote", "add", tn, "https://"+addr, "--token", te.secrets[tn], "--accept-certificate")
	}
	te.secrets["admin"] = strings.TrimSpace(e.MustRF("token", "create", "root2", "--role", "admin"))
	// The default image's kernel and initrd: a host pool every tenant
	// may read.
	e.MustRF("pool", "create", "images", "--dir", filepath.Dir(imgPaths.Kernel), "--shared")
	e.MustRF("pool", "create", "ta-vols", "--dir", filepath.Join(e.Dir, "ta-vols"), "--tenant", "ta")
	if out := e.MustRF("info"); !strings.Contains(out, "ledger_tenant_ta") || !strings.Contains(out, "400 MiB, 1 vCPUs reserved; 0 MiB, 0 held") {
		t.Fatalf("info does not show the tenants' reservations:\n%s", out)
	}
	return te
}

// createGuests: each tenant creates its guest over its remote; a tenant
// cannot create in another's name.
func (te *tenantEnv) createGuests() {
	t := te.t
	te.r.refused("makes objects of its own tenant only", "--remote", "ta", "create", te.WriteConfig("ax", ""), "--tenant", "tb")
	te.r.must("--remote", "ta", "create", te.WriteConfig("a1", ""))
	te.r.must("--remote", "tb", "create", te.WriteConfig("b1", `uuid = "`+bUUID+`"`))
	for name, tn := range map[string]string{"a1": "ta", "b1": "tb"} {
		if d := te.Domain(name); d.Tenant != tn || d.PID == 0 {
			t.Fatalf("%s: tenant %q, pid %d; want %s's, running", name, d.Tenant, d.PID, tn)
		}
	}
	// Its own guest's console, over its remote.
	if out := te.r.must("--remote", "ta", "console", "a1", "--until", image.ReadyLine, "--timeout", "180"); !strings.Contains(out, image.ReadyLine) {
		t.Fatalf("ta's console of a1: %q", tail(out, 2000))
	}
}

// checkIsolation: ta lists only a1; every route on b1 (by name, domid,
// UUID) answers as for a domain that does not exist; b1 is untouched.
func (te *tenantEnv) checkIsolation() {
	t := te.t
	var ds []api.Domain
	if err := json.Unmarshal([]byte(te.r.must("--remote", "ta", "list", "--json")), &ds); err != nil || len(ds) != 1 || ds[0].Spec.Name != "a1" || ds[0].Tenant != "ta" {
		t.Fatalf("ta's list: %+v %v", ds, err)
	}
	if out := te.r.must("--remote", "ta", "list"); !strings.Contains(out, "Tenant") || strings.Contains(out, "b1") {
		t.Fatalf("ta's list table:\n%s", out)
	}
	b1 := te.Domain("b1")
	for _, ref := range []string{"b1", fmt.Sprint(b1.ID), bUUID, strings.ToUpper(bUUID)} {
		for _, call := range []struct{ method, path string }{
			{"GET", "/domains/%s"}, {"GET", "/domains/%s/console"}, {"POST", "/domains/%s/destroy"},
			{"POST", "/domains/%s/pause"}, {"GET", "/domains/%s/snapshots"}, {"GET", "/logs/%s"},
			{"POST", "/domains/%s/rename"}, {"GET", "/domains/%s/vcpus"}, {"POST", "/domains/%s/dump-core"},
			{"POST", "/domains/%s/save/image"}, {"GET", "/domains/%s/export/archive"},
		} {
			code, body := te.call("ta", call.method, fmt.Sprintf(call.path, ref))
			nc, nbody := te.call("ta", call.method, fmt.Sprintf(call.path, "zz"+ref))
			if code != http.StatusNotFound || nc != code || body != strings.ReplaceAll(nbody, "zz"+ref, ref) {
				t.Errorf("ta %s %s: %d %s; a domain that does not exist: %d %s", call.method, fmt.Sprintf(call.path, ref), code, body, nc, nbody)
			}
		}
		// The admin sees the same b1 by the same reference.
		if code, body := te.call("admin", "GET", "/domains/"+ref); code != http.StatusOK || !strings.Contains(body, `"b1"`) {
			t.Fatalf("the admin's GET /domains/%s: %d %s", ref, code, body)
		}
	}
	te.r.refused(`no domain named "b1"`, "--remote", "ta", "destroy", "b1")
	te.r.refused(`no domain named "b1"`, "--remote", "ta", "console", "b1", "--until", "x", "--timeout", "5")
	te.r.refused(`no domain named "b1"`, "--remote", "ta", "info", "b1")
	if out := te.r.must("--remote", "ta", "top", "-b"); !strings.Contains(out, "a1") || strings.Contains(out, "b1") {
		t.Fatalf("ta's top:\n%s", out)
	}
	te.r.refused(`no tenant named "tb"`, "--remote", "ta", "tenant", "show", "tb")
	if out := te.r.must("--remote", "ta", "tenant", "list"); !strings.Contains(out, "ta") || strings.Contains(out, "tb") {
		t.Fatalf("ta's tenant list:\n%s", out)
	}
	if now := te.Domain("b1"); now.PID != b1.PID || now.State != b1.State && now.State != api.StateBlocked && now.State != api.StateRunning {
		t.Fatalf("b1 changed: %+v, was %+v", now, b1)
	}
}

// checkXlVerbs: ta renames its own guest (it stays ta's), not to a name
// taken host-wide; its core file on the host must be in one of its
// pools; a save streamed to ta's machine is restored, uploaded, as ta's
// again (tb's restore of it is refused, nothing made); the admin's audit
// picks ta's calls by tenant.
func (te *tenantEnv) checkXlVerbs() {
	t := te.t
	te.r.refused("a domain named b1 exists", "--remote", "ta", "rename", "a1", "b1")
	te.r.must("--remote", "ta", "rename", "a1", "a1r")
	if d := te.Domain("a1r"); d.Tenant != "ta" || d.PID == 0 {
		t.Fatalf("a1 renamed by ta: %+v", d)
	}
	te.r.must("--remote", "ta", "rename", "a1r", "a1")
	core := filepath.Join(te.Dir, "a1.core")
	te.r.refused("core file: "+core+" is not in one of tenant ta's pools", "--remote", "ta", "dump-core", "a1", core)
	if _, err := os.Stat(core); err == nil {
		t.Fatalf("a refused dump-core left %s", core)
	}
	img := filepath.Join(t.TempDir(), "a1.save")
	te.r.must("--remote", "ta", "save", "a1", img)
	if tn := te.tenant("ta"); tn.Usage.MemoryMiB != 0 || len(te.List()) != 1 {
		t.Fatalf("after ta saved a1: ta holds %d MiB, domains %+v", tn.Usage.MemoryMiB, te.List())
	}
	te.r.refused("holds a domain that is not tenant tb's", "--remote", "tb", "restore", img)
	if ds := te.List(); len(ds) != 1 || len(te.QEMUs()) != 1 {
		t.Fatalf("tb's refused restore left something: %+v", ds)
	}
	te.r.must("--remote", "ta", "restore", img)
	if d := te.Domain("a1"); d.Tenant != "ta" || d.PID == 0 || te.tenant("ta").Usage.MemoryMiB == 0 {
		t.Fatalf("a1 restored by ta: %+v", d)
	}
	var recs []api.AuditRecord
	if err := json.Unmarshal([]byte(te.MustRF("audit", "--tenant", "ta", "--json")), &recs); err != nil || len(recs) == 0 {
		t.Fatalf("audit --tenant ta: %v", err)
	}
	renamed := false
	for _, r := range recs {
		renamed = renamed || strings.HasSuffix(r.Path, "/a1/rename")
		if r.Tenant != "ta" {
			t.Errorf("audit --tenant ta holds a call of tenant %q: %+v", r.Tenant, r)
		}
	}
	if !renamed {
		t.Errorf("audit --tenant ta lacks ta's rename: %+v", recs)
	}
}

// tenant is a tenant as the admin sees it.
func (te *tenantEnv) tenant(name string) api.Tenant {
	te.t.Helper()
	var tn api.Tenant
	if err := json.Unmarshal([]byte(te.MustRF("tenant", "show", name, "--json")), &tn); err != nil {
		te.t.Fatal(err)
	}
	return tn
}

// call makes one raw API call with the remote's token: status and body.
func (te *tenantEnv) call(who, method, path string) (int, string) {
	te.t.Helper()
	req, _ := http.NewRequest(method, "https://"+te.addr+api.Version+path, strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+te.secrets[who])
	resp, err := te.http.Do(req)
	if err != nil {
		te.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// events reads who's event stream from the start for a moment.
func (te *tenantEnv) events(who string) []api.Event {
	te.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+te.addr+api.Version+"/events?since=0", nil)
	req.Header.Set("Authorization", "Bearer "+te.secrets[who])
	resp, err := te.http.Do(req)
	if err != nil {
		te.t.Fatalf("events of %s: %v", who, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		te.t.Fatalf("events of %s: %d %s", who, resp.StatusCode, b)
	}
	var out []api.Event
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var ev api.Event
		if json.Unmarshal(sc.Bytes(), &ev) == nil {
			out = append(out, ev)
		}
	}
	return out
}

// checkEvents: ta's stream has its own domain's life and nothing of tb's
// (the admin's has both, so there was something to leak).
func (te *tenantEnv) checkEvents() {
	t := te.t
	seen := func(evs []api.Event, tenant string) (own, other int) {
		for _, ev := range evs {
			switch {
			case ev.Domain == "b1" || ev.Tenant == "tb":
				other++
			case ev.Domain == "a1" && ev.Tenant == tenant:
				own++
			}
		}
		return
	}
	evs := te.events("ta")
	if own, other := seen(evs, "ta"); own == 0 || other != 0 {
		t.Errorf("ta's events: %d of a1, %d of tb's: %+v", own, other, evs)
	}
	if own, other := seen(te.events("admin"), "ta"); own == 0 || other == 0 {
		t.Errorf("the admin's events: %d of a1, %d of b1", own, other)
	}
}

// overhead is QEMU's overhead for a domain file, as the ledger counts it
// (the dry run's figure: TCG and KVM differ).
func (te *tenantEnv) overhead(cfg string) int {
	te.t.Helper()
	var d api.DryRun
	if err := json.Unmarshal([]byte(te.MustRF("create", cfg, "--dry-run", "--json")), &d); err != nil {
		te.t.Fatal(err)
	}
	return d.OverheadMiB
}

// checkQuotas: over ta's quota (memory, disk), and a host domain into the
// tenants' reservations: refused with the numbers, nothing left behind;
// quotas cannot go below what is held.
func (te *tenantEnv) checkQuotas() {
	t := te.t
	cfg := te.WriteConfig("a2", "")
	over := te.overhead(cfg)
	cost := 128 + over
	te.r.refused(fmt.Sprintf("memory: tenant ta's quota is 400 MiB and its domains hold %d MiB (a1 %d MiB); a2 asks %d MiB (128 guest + %d QEMU overhead), %d MiB left",
		cost, cost, cost, over, 400-cost), "--remote", "ta", "create", cfg)
	te.r.must("--remote", "ta", "volume", "create", "ta-vols", "v1", "512M")
	te.r.refused("disk: tenant ta's quota is 1.0 GiB and its volumes and disks hold 512.0 MiB; volume create ta-vols v2 asks 1.0 GiB, 512.0 MiB left",
		"--remote", "ta", "volume", "create", "ta-vols", "v2", "1G")
	te.r.refused("shared with the tenants to read", "--remote", "ta", "volume", "create", "images", "v3", "1M")
	cfg = te.WriteConfig("h1", "memory = 512")
	over = te.overhead(cfg)
	res := te.RF("create", cfg)
	if res.Code == 0 || !strings.Contains(res.Stderr, fmt.Sprintf("memory: h1 asks %d MiB (512 guest + %d QEMU overhead), 400 MiB free of", 512+over, over)) ||
		!strings.Contains(res.Stderr, "tenant ta 400 MiB") || !strings.Contains(res.Stderr, "tenant tb 400 MiB") {
		t.Fatalf("a host domain into the tenants' reservations: %+v", res)
	}
	if ds := te.List(); len(ds) != 2 || len(te.QEMUs()) != 2 {
		t.Fatalf("refused creates left something: %d domains, QEMUs %v", len(ds), te.QEMUs())
	}
	if res := te.RF("tenant", "set", "ta", "--memory", "200"); res.Code == 0 || !strings.Contains(res.Stderr, "its quota cannot go below") {
		t.Fatalf("a quota below what ta holds: %+v", res)
	}
	// What this adds fits 80 columns (of info, the ledger's lines: some
	// host facts are long paths).
	var ledger []string
	for _, l := range strings.Split(te.MustRF("info"), "\n") {
		if strings.HasPrefix(l, "ledger") {
			ledger = append(ledger, l)
		}
	}
	for _, out := range []string{strings.Join(ledger, "\n"), te.MustRF("tenant", "list"), te.MustRF("tenant", "show", "ta"), te.MustRF("list")} {
		for _, l := range strings.Split(out, "\n") {
			if len(l) > 80 {
				t.Errorf("line over 80 columns: %q", l)
			}
		}
	}
	var tn api.Tenant
	if err := json.Unmarshal([]byte(te.r.must("--remote", "ta", "tenant", "show", "ta", "--json")), &tn); err != nil ||
		tn.Usage.MemoryMiB != cost || tn.Quota.MemoryMiB != 400 || len(tn.Usage.Domains) != 1 || tn.Usage.DiskBytes != 512<<20 {
		t.Fatalf("ta's own tenant: %+v %v", tn, err)
	}
}

// checkDelete: a tenant that owns a domain or a token stays; ta's own
// destroy works; once ta owns nothing it goes, and so does its
// reservation.
func (te *tenantEnv) checkDelete() {
	t := te.t
	if res := te.RF("tenant", "delete", "ta"); res.Code == 0 || !strings.Contains(res.Stderr, "tenant ta still owns domains a1; pools ta-vols; tokens ta-admin") {
		t.Fatalf("deleting a tenant that owns a domain: %+v", res)
	}
	te.r.must("--remote", "ta", "destroy", "a1")
	te.r.must("--remote", "ta", "volume", "delete", "ta-vols", "v1")
	te.MustRF("pool", "delete", "ta-vols")
	te.MustRF("token", "revoke", "ta-admin")
	before := te.ledger()
	te.MustRF("tenant", "delete", "ta")
	if after := te.ledger(); after.FreeMiB != before.FreeMiB+400 || len(after.Tenants) != 1 {
		t.Fatalf("ledger after ta went: %+v (before %+v)", after, before)
	}
	te.r.refused("revoked", "--remote", "ta", "list")
	if d := te.Domain("b1"); d.PID == 0 {
		t.Fatalf("b1 did not survive: %+v", d)
	}
}

func (te *tenantEnv) ledger() api.Ledger {
	te.t.Helper()
	var h api.HostInfo
	if err := json.Unmarshal([]byte(te.MustRF("info", "--json")), &h); err != nil {
		te.t.Fatal(err)
	}
	return h.Ledger
}
