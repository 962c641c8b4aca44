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
	"strconv"
	"syscall"
)

// Verb is the hidden command the ringfence binary dispatches to Main.
const Verb = "__launch"

// Command returns the argv that joins procsFiles and then runs argv.
func Command(self string, procsFiles []string, argv []string) []string {
	out := []string{self, Verb}
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
