// Command ringfence is the Ringfence CLI and daemon (`ringfence serve`).
// It wires the host-side commands (internal/daemon) into the CLI, which
// is otherwise only a client of the daemon's API.
package main

import (
	"fmt"
	"os"

	"github.com/ringfence/ringfence/internal/cli"
	"github.com/ringfence/ringfence/internal/daemon"
	"github.com/ringfence/ringfence/internal/launch"
)

func main() {
	host := cli.Host{
		Serve:      daemon.ServeMain,
		Store:      daemon.StoreMain,
		ServeFlags: daemon.ServeFlags,
		StoreFlags: daemon.StoreFlags,
		Hidden: map[string]func([]string) int{
			daemon.HolderVerb:     func([]string) int { return daemon.HolderMain() },
			daemon.StoreCheckVerb: daemon.StoreCheckMain,
			// HA's fence guard: kills the HA guests if the daemon cannot.
			daemon.FenceGuardVerb: daemon.FenceGuardMain,
			// The daemon's fork-exec trampoline for QEMU: Main returns
			// only on failure.
			launch.Verb: func(args []string) int { fmt.Fprintln(os.Stderr, launch.Main(args)); return 127 },
		},
	}
	os.Exit(cli.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, host))
}
