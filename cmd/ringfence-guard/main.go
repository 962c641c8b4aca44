// Command ringfence-guard is the fence guard (see internal/ha): the
// process that kills a host's HA guests at the fence deadline when the
// daemon hangs, is stopped or dies. It is the daemon's helper, not a user
// command, and a binary of its own because it runs locked in memory
// (mlockall) for as long as HA guests run: the whole ringfence binary
// locked ~150 MB, this one a few MB. Without it the daemon runs
// `ringfence __fenceguard` instead.
package main

import (
	"fmt"
	"os"

	"github.com/ringfence/ringfence/internal/ha"
)

func main() {
	// Run as the daemon starts it: `ringfence-guard __fenceguard DIR`
	// (the verb in its command line is how the daemon recognises it).
	if len(os.Args) != 3 || os.Args[1] != ha.GuardVerb {
		fmt.Fprintf(os.Stderr, "usage: %s %s DIR (the daemon starts it; it is not a user command)\n", os.Args[0], ha.GuardVerb)
		os.Exit(2)
	}
	if err := ha.RunGuard(os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "fence guard:", err)
		os.Exit(1)
	}
}
