// Package arch enforces the layering described in docs/design.md, so the
// architecture cannot drift silently.
package arch

import (
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const mod = "github.com/ringfence/ringfence/"

// allowed lists, for every package of the product, the internal packages
// it may import. A package that is not listed fails the test: a new one
// takes its place in the layering on purpose, here.
var allowed = map[string][]string{
	// The binaries wire packages together and do nothing else.
	"cmd/ringfence":        {"internal/cli", "internal/daemon", "internal/launch"},
	"cmd/ringfence-launch": {"internal/launch"},
	"cmd/ringfence-guard":  {"internal/ha"},

	// The CLI is a client of the API: never the daemon, the domain core,
	// the store or the engine. It reads domain files itself (config) and
	// builds the default guest image locally (image).
	"internal/cli":    {"internal/api", "internal/client", "internal/cmdline", "internal/config", "internal/image", "internal/saveimage", "internal/selfsign", "internal/storage"},
	"internal/client": {"internal/api"},
	"internal/api":    {},

	// The daemon serves the API over the domain core and the host-side
	// managers.
	"internal/daemon": {"internal/api", "internal/audit", "internal/auth", "internal/cmdline", "internal/config", "internal/domain", "internal/engine", "internal/engine/qemu",
		"internal/cluster", "internal/etcdmember", "internal/events", "internal/ha", "internal/host", "internal/launch", "internal/migration", "internal/names", "internal/netmgr", "internal/operations", "internal/peer", "internal/procfs", "internal/revert", "internal/safefile", "internal/selfsign", "internal/spec", "internal/storage", "internal/store", "internal/tenants", "internal/tokens", "internal/usage", "internal/webui"},
	"internal/domain": {"internal/api", "internal/auth", "internal/config", "internal/crashpoint", "internal/engine", "internal/host", "internal/migration", "internal/names", "internal/saveimage",
		"internal/procfs", "internal/revert", "internal/safefile", "internal/spec", "internal/storage", "internal/store", "internal/usage", "internal/cloudinit"},

	// The engine boundary: domain talks to engine only; the QEMU engine
	// knows nothing above it.
	"internal/engine":          {},
	"internal/engine/qemu":     {"internal/engine", "internal/engine/qemu/qga", "internal/engine/qemu/qmp", "internal/imagelock", "internal/launch", "internal/procfs"},
	"internal/engine/qemu/qmp": {},
	"internal/engine/qemu/qga": {},
	// Test doubles and conformance suites: each knows only the boundary
	// it stands in for or checks.
	"internal/engine/fake":       {"internal/engine"},
	"internal/engine/enginetest": {"internal/engine"},
	"internal/store/memstore":    {"internal/store"},
	"internal/store/storetest":   {"internal/store"},

	// The migration protocol and its transport, below the domain core
	// (the steps) and the daemon (the listener and the HTTP upgrades).
	"internal/migration": {"internal/api"},

	// Who may do what: permissions, roles, principals. A leaf.
	"internal/auth": {},
	// The web admin: its pages and the browsers' sessions, over the API's
	// wire types and roles (never the daemon: it is one more client).
	"internal/webui": {"internal/api", "internal/auth", "internal/store"},
	// Who did what: the append-only audit log in the store.
	"internal/audit": {"internal/api", "internal/store"},
	// Tenants: records, ledger reservations, usage, the rule of what a
	// tenant's domain may use (the objects' owners are read, not kept).
	// The usage ledger: records, rating and quotas over the store.
	"internal/usage": {"internal/api", "internal/store"},

	"internal/tenants": {"internal/api", "internal/host", "internal/names", "internal/spec", "internal/store"},
	// API tokens: made, hashed, checked, revoked.
	"internal/tokens": {"internal/api", "internal/auth", "internal/names", "internal/store"},
	// Self-signed certificates pinned by fingerprint (the API listener's, a CLI's).
	"internal/selfsign": {"internal/safefile"},

	// The daemon's long jobs (operations): a registry over the wire types.
	"internal/operations": {"internal/api", "internal/store"},

	// The event bus: sequence numbers, the retained window, subscribers.
	"internal/events": {"internal/api"},

	// The save image's format: the daemon writes and checks it, the CLI
	// checks a copy it received over a remote.
	"internal/saveimage": {"internal/api"},

	// Host-side managers and their leaves.
	"internal/config":  {"internal/api", "internal/names", "internal/spec"},
	"internal/spec":    {"internal/api", "internal/names"}, // a valid spec's rules: config and the daemon share them
	"internal/storage": {"internal/api", "internal/imagelock", "internal/names", "internal/procfs", "internal/safefile", "internal/spec", "internal/store"},
	"internal/netmgr":  {"internal/api", "internal/network", "internal/revert", "internal/storage", "internal/store"},
	"internal/network": {},
	"internal/peer":    {"internal/api", "internal/names", "internal/safefile"},
	"internal/host":    {"internal/api", "internal/procfs"},
	"internal/store":   {"internal/safefile"},
	// The cluster's store: etcd as a store.Store, and the etcd member a
	// daemon runs (embed), each knowing only its own boundary.
	"internal/store/etcdstore": {"internal/store"},
	"internal/etcdmember":      {},
	// This host's membership of a cluster: its member, its record, the verbs.
	"internal/cluster": {"internal/api", "internal/etcdmember", "internal/revert", "internal/safefile", "internal/store", "internal/store/etcdstore"},
	// A host's fencing of its HA guests: the deadline and the guard process.
	"internal/ha":         {"internal/procfs", "internal/safefile"},
	"internal/image":      {"internal/api", "internal/procfs", "internal/storage"},
	"internal/crashpoint": {},
	"internal/cloudinit":  {},
	"internal/cmdline":    {},
	"internal/imagelock":  {},
	"internal/launch":     {},
	"internal/names":      {},
	"internal/procfs":     {},
	"internal/revert":     {},
	"internal/safefile":   {},
}

// Tests and benchmarks drive the product from outside, as its users do:
// through the API, the CLI and the images, never the daemon's insides.
var outsideForbidden = []string{"internal/daemon", "internal/domain", "internal/store", "internal/netmgr", "internal/storage"}

func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "../../...").Output()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], mod)
		seen[pkg] = true
		outside := strings.HasPrefix(pkg, "tests/") || strings.HasPrefix(pkg, "bench/")
		may, listed := allowed[pkg]
		if !listed && !outside {
			t.Errorf("%s is not in the layering: give it its allowed imports in tests/arch", pkg)
			continue
		}
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			imp = strings.TrimPrefix(imp, mod)
			if outside {
				for _, bad := range outsideForbidden {
					if imp == bad {
						t.Errorf("%s imports %s: tests and benchmarks drive the product from outside", pkg, imp)
					}
				}
				continue
			}
			if !contains(may, imp) {
				t.Errorf("%s imports %s, which the layering does not allow (allowed: %s)", pkg, imp, strings.Join(may, ", "))
			}
		}
	}
	var gone []string
	for pkg := range allowed {
		if !seen[pkg] {
			gone = append(gone, pkg)
		}
	}
	sort.Strings(gone)
	if len(gone) > 0 {
		t.Errorf("the layering lists packages that no longer exist: %s", strings.Join(gone, ", "))
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
