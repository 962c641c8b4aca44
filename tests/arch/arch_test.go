// Package arch enforces the layering described in docs/design.md, so the
// architecture cannot drift silently.
package arch

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/ringfence/ringfence/"

// forbidden: package -> internal packages it must not import.
var rules = map[string][]string{
	"internal/api":         {"internal/"},
	"internal/config":      {"internal/domain", "internal/daemon", "internal/engine", "internal/store", "internal/network", "internal/host"},
	"internal/engine":      {"internal/domain", "internal/daemon", "internal/store", "internal/network", "internal/host", "internal/config"},
	"internal/engine/qemu": {"internal/domain", "internal/daemon", "internal/store", "internal/network", "internal/host", "internal/config"},
	"internal/network":     {"internal/domain", "internal/daemon", "internal/engine", "internal/store", "internal/host"},
	"internal/store":       {"internal/domain", "internal/daemon", "internal/engine", "internal/network", "internal/host"},
	"internal/host":        {"internal/domain", "internal/daemon", "internal/engine", "internal/network", "internal/store"},
	"internal/client":      {"internal/domain", "internal/daemon", "internal/engine", "internal/store", "internal/network", "internal/host"},
	"internal/cli":         {"internal/domain", "internal/engine", "internal/store", "internal/network", "internal/host"},
	"cmd/ringfence":        {"internal/domain", "internal/daemon", "internal/engine", "internal/store"},
}

func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "../../...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], mod)
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			imp = strings.TrimPrefix(imp, mod)
			for _, bad := range rules[pkg] {
				if strings.HasPrefix(imp, bad) && !(pkg == "internal/engine/qemu" && strings.HasPrefix(imp, "internal/engine")) {
					t.Errorf("%s imports %s, which the layering forbids", pkg, imp)
				}
			}
		}
	}
}
