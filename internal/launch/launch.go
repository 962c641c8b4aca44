// Package launch is the few lines that run between fork and exec of a
// QEMU: Go cannot run code there, so the daemon starts its own binary with
// this verb, which joins the domain's cgroups and then execs QEMU under the
// same pid. Guest RAM is therefore allocated and charged inside the
// domain's cgroup from the first page.
package launch

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// Verb is the hidden command the ringfence binary dispatches to Main.
const Verb = "__launch"

// Helper is the small binary that does only this (cmd/ringfence-launch),
// looked for next to the ringfence binary.
const Helper = "ringfence-launch"

// Prefix is how to run the launcher from the ringfence binary at self:
// the helper beside it when installed (it starts in ~1 ms), else the
// ringfence binary itself with the hidden verb (~20 ms).
func Prefix(self string) []string {
	h := filepath.Join(filepath.Dir(self), Helper)
	if fi, err := os.Stat(h); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return []string{h}
	}
	return []string{self, Verb}
}

// Command returns the argv that runs the launcher (prefix, see Prefix),
// which joins procsFiles and then runs argv.
func Command(prefix []string, procsFiles []string, argv []string) []string {
	out := append([]string(nil), prefix...)
	for _, f := range procsFiles {
		out = append(out, "--cgroup", f)
	}
	return append(append(out, "--"), argv...)
}

// Main runs in the child: join the cgroups, then exec.
func Main(args []string) error {
	var files []string
	for len(args) > 0 && args[0] != "--" {
		if args[0] != "--cgroup" || len(args) < 2 {
			return fmt.Errorf("launch: unexpected argument %q", args[0])
		}
		files = append(files, args[1])
		args = args[2:]
	}
	if len(args) < 2 {
		return fmt.Errorf("launch: no command after --")
	}
	argv := args[1:]
	pid := strconv.Itoa(os.Getpid())
	for _, f := range files {
		if err := os.WriteFile(f, []byte(pid), 0o644); err != nil {
			return fmt.Errorf("launch: joining cgroup %s: %w", f, err)
		}
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("launch: %w", err)
	}
	return syscall.Exec(path, argv, os.Environ())
}
