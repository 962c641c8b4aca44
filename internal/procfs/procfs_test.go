package procfs

import (
	"os"
	"testing"
	"time"
)

// The process sum covers every thread: never less than the main thread's,
// and it grows while the process works.
func TestProcessSchedStat(t *testing.T) {
	pid := os.Getpid()
	run0, _ := ProcessSchedStat(pid)
	for end := time.Now().Add(20 * time.Millisecond); time.Now().Before(end); {
	}
	run, _ := ProcessSchedStat(pid)
	main, _, err := SchedStat(pid, pid)
	if err != nil {
		t.Fatal(err)
	}
	if run < main || run-run0 < int64(10*time.Millisecond) {
		t.Fatalf("process run time %d ns (was %d), main thread %d", run, run0, main)
	}
	if r, w := ProcessSchedStat(1 << 30); r != 0 || w != 0 {
		t.Fatal("a missing process has no CPU time")
	}
}
