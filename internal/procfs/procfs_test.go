package procfs

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// The process sum covers every thread: never less than the main thread's,
// and it grows while the process works.
func TestProcessSchedStat(t *testing.T) {
	pid := os.Getpid()
	run0, _ := ProcessSchedStat(pid)
	// Work until the kernel's own accounting (getrusage) says this
	// process got 20 ms of CPU: on a busy host that takes longer than
	// 20 ms of wall time, and only CPU time is asserted.
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for start, deadline := cpu(), time.Now().Add(10*time.Second); cpu()-start < 20*time.Millisecond && time.Now().Before(deadline); {
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

func TestParseMemInfo(t *testing.T) {
	m := parseMemInfo("MemTotal:       24684648 kB\nMemAvailable:   22626380 kB\nHugePages_Free:        3\nHugepagesize:       2048 kB\nbad\n")
	for k, want := range map[string]int64{"MemTotal": 24684648, "MemAvailable": 22626380, "HugePages_Free": 3, "Hugepagesize": 2048} {
		if m[k] != want {
			t.Errorf("%s = %d, want %d", k, m[k], want)
		}
	}
	if live, err := MemInfo(); err != nil || live["MemTotal"] <= 0 {
		t.Fatalf("MemInfo: %v, %v", live["MemTotal"], err)
	}
}
