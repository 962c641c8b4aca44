package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from what the reader says now")

// goldenFiles are corpus files whose diagnostics are kept word for word:
// what an admin reads about each (a duplicate key, Xen's console, a final
// comment, driver domains, a placeholder, a lexical error, an unknown key,
// PV GRUB, pygrub on a partition, Open vSwitch).
var goldenFiles = []string{
	"babrakov__infoza.cfg",
	"xentroops__domf.cfg",
	"babrakov__bak_ubu.cfg",
	"xen__xmexample.pv-grub.cfg",
	"babrakov__krs23.ru.cfg",
	"babrakov__bak_ubuntu.cfg.b.cfg",
}

// TestGoldenDiagnostics compares the warning and error lines of a few
// corpus files with testdata/golden (go test -run Golden -update rewrites
// them). The corpus is read where it is, not copied.
func TestGoldenDiagnostics(t *testing.T) {
	dir := corpusDir(t)
	for _, name := range goldenFiles {
		src, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		_, warns, err := Decode(name, src)
		var lines []string
		for _, d := range Diagnostics(warns, err) {
			lines = append(lines, d.String())
		}
		got := strings.Join(lines, "\n") + "\n"
		golden := filepath.Join("testdata", "golden", name+".txt")
		if *update {
			os.MkdirAll(filepath.Dir(golden), 0o755)
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test ./internal/config -run Golden -update)", err)
		}
		if got != string(want) {
			t.Errorf("%s: the diagnostics changed (go test -run Golden -update if on purpose):\n--- got\n%s--- want\n%s", name, got, want)
		}
	}
}
