package api

import "path/filepath"

// Release is Ringfence's version (the Makefile's VERSION reads it).
const Release = "0.1.0"

// Where a production host keeps things: the client finds the daemon's
// socket where the daemon makes it.
const (
	DefaultStateDir = "/var/lib/ringfence"
	DefaultRunDir   = "/run/ringfence"
)

// SocketPath is the daemon's API socket in a run dir.
func SocketPath(runDir string) string { return filepath.Join(runDir, "ringfence.sock") }
