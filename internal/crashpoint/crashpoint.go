// Package crashpoint kills the daemon with SIGKILL at a named point of a
// flow, for the tests that prove a kill -9 anywhere leaves a consistent
// host. It is driven by one environment variable, read once:
//
//	RINGFENCE_CRASHPOINT=start:qemu-up     the first time that point is hit
//	RINGFENCE_CRASHPOINT=start:qemu-up#3   the third time
//
// Unset (production), Hit costs one string comparison.
package crashpoint

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

var (
	name  string
	nth   = 1
	mu    sync.Mutex
	count int
)

func init() {
	v := os.Getenv("RINGFENCE_CRASHPOINT")
	if v == "" {
		return
	}
	n, at, ok := strings.Cut(v, "#")
	name = n
	if ok {
		if i, err := strconv.Atoi(at); err == nil && i > 0 {
			nth = i
		}
	}
}

// Hit kills the process if point is the configured one (and its count is
// reached). The points are listed in Points.
func Hit(point string) {
	if name == "" || point != name {
		return
	}
	mu.Lock()
	count++
	c := count
	mu.Unlock()
	if c == nth {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // never returns: the signal is on its way
	}
}

// Points are the crash points the daemon has, in the order of a start.
var Points = []string{
	"define:saved",         // a definition is stored, nothing started
	"start:intent",         // the new incarnation is recorded, nothing made yet
	"start:host-ready",     // taps and cgroups made, QEMU not started
	"start:qemu-up",        // QEMU runs (vCPUs stopped), not yet recorded
	"start:recorded",       // QEMU recorded, vCPUs not started
	"start:running",        // vCPUs started, the start not yet marked done
	"exit:noted",           // an incarnation ended and its action is recorded
	"restart:before-start", // a restart's old incarnation is cleaned up
}
