package benchenv

import (
	"os"
	"runtime/pprof"
)

// CPUProfile starts a CPU profile into path ("": none) and returns what
// stops it; call the stop before an os.Exit too (deferred calls do not run
// then).
func CPUProfile(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil || pprof.StartCPUProfile(f) != nil {
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
