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

// ReadStat's fields are the kernel's: this process has used CPU, and its
// major faults match getrusage's count.
func TestReadStat(t *testing.T) {
	for start := time.Now(); time.Since(start) < 30*time.Millisecond; {
	}
	st, err := ReadStat(os.Getpid(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	if st.UTime+st.STime == 0 || st.StartTime == 0 || (st.State != 'R' && st.State != 'S') {
		t.Fatalf("stat of a running process: %+v", st)
	}
	if int64(st.MajFlt) > ru.Majflt || int64(st.MajFlt) < ru.Majflt-5 {
		t.Fatalf("majflt %d, getrusage says %d", st.MajFlt, ru.Majflt)
	}
	if _, err := ReadStat(1<<30, 0); err == nil {
		t.Fatal("a missing process has a stat")
	}
}

// The fields by position, after a comm with spaces and parentheses.
func TestParseStat(t *testing.T) {
	line := "4242 (CPU 0/TCG (x)) R 1 2 3 0 -1 4194560 1100 0 7 0 250 31 0 0 20 0 5 0 98765 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 0 0 0 0 0"
	st, err := parseStat("stat", []byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{State: 'R', MajFlt: 7, UTime: 250, STime: 31, StartTime: 98765, CPU: 1}
	if st != want {
		t.Fatalf("parsed %+v, want %+v", st, want)
	}
	if _, err := parseStat("stat", []byte("4242 (short) R 1 2")); err == nil {
		t.Fatal("a short stat line parsed")
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
