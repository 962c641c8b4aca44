// Command ringfence-launch joins a domain's cgroups and execs QEMU (see
// internal/launch). It is the daemon's helper, not a user command: a small
// binary starts in about a millisecond where re-running the whole
// ringfence binary took ~20 ms, and QEMU's start is on a migration's
// critical path. Without it the daemon runs `ringfence __launch` instead.
package main

import (
	"fmt"
	"os"

	"github.com/ringfence/ringfence/internal/launch"
)

func main() {
	if err := launch.Main(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(127)
	}
}
