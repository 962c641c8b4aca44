// Package procfs reads the few /proc facts Ringfence needs: about
// processes and threads (run state, CPU and start time, names, open
// files) and about the host (memory, boot id). The one place that parses
// /proc; others pass paths under it (mountinfo, cpuinfo) to parsers that
// tests feed with fixtures.
package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ClockTicks is USER_HZ, 100 on every Linux we support.
const ClockTicks = 100

// Stat is the parsed part of /proc/PID[/task/TID]/stat.
type Stat struct {
	State     byte   // R, S, D, Z, T...
	MajFlt    uint64 // page faults that had to read a page in (swap, files)
	UTime     uint64 // ticks
	STime     uint64
	StartTime uint64 // ticks after boot; with the pid it identifies a process
	CPU       int    // the host CPU it last ran on
}

// CPUSeconds is user+system time in seconds.
func (s Stat) CPUSeconds() float64 { return float64(s.UTime+s.STime) / ClockTicks }

// ReadStat reads /proc/pid/stat, or a thread's when tid > 0.
func ReadStat(pid, tid int) (Stat, error) {
	p := fmt.Sprintf("/proc/%d/stat", pid)
	if tid > 0 {
		p = fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return Stat{}, err
	}
	return parseStat(p, b)
}

// parseStat reads the fields of a stat file (p names it in errors).
func parseStat(p string, b []byte) (Stat, error) {
	// comm may contain spaces and parens: split after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("%s: malformed", p)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return Stat{}, fmt.Errorf("%s: malformed", p)
	}
	// f[0] is field 3 (state); majflt is field 12, utime 14, stime 15,
	// starttime 22.
	var s Stat
	s.State = f[0][0]
	s.MajFlt, _ = strconv.ParseUint(f[9], 10, 64)
	s.UTime, _ = strconv.ParseUint(f[11], 10, 64)
	s.STime, _ = strconv.ParseUint(f[12], 10, 64)
	s.StartTime, _ = strconv.ParseUint(f[19], 10, 64)
	if len(f) > 36 { // processor is field 39
		s.CPU, _ = strconv.Atoi(f[36])
	}
	return s, nil
}

// Alive reports whether pid is a live (not zombie) process that started at
// startTime; a zero startTime skips that check.
func Alive(pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	s, err := ReadStat(pid, 0)
	if err != nil || s.State == 'Z' || s.State == 'X' {
		return false
	}
	return startTime == 0 || s.StartTime == startTime
}

// CmdlineContains reports whether pid's command line contains s; it guards
// a kill against a recycled pid.
func CmdlineContains(pid int, s string) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), s)
}

// SchedStat is /proc/PID/task/TID/schedstat: time on a CPU and time
// runnable but waiting for one, in nanoseconds.
func SchedStat(pid, tid int) (run, wait int64, err error) {
	b, err := ReadCounter(fmt.Sprintf("/proc/%d/task/%d/schedstat", pid, tid))
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("schedstat of %d/%d: malformed", pid, tid)
	}
	run, _ = strconv.ParseInt(f[0], 10, 64)
	wait, _ = strconv.ParseInt(f[1], 10, 64)
	return run, wait, nil
}

// Threads lists the ids of pid's threads.
func Threads(pid int) ([]int, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(tasks))
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			out = append(out, tid)
		}
	}
	return out, nil
}

// ProcessSchedStat sums SchedStat over all of pid's threads (threads that
// end meanwhile are skipped).
func ProcessSchedStat(pid int) (run, wait int64) {
	tids, _ := Threads(pid)
	for _, tid := range tids {
		if r, w, err := SchedStat(pid, tid); err == nil {
			run, wait = run+r, wait+w
		}
	}
	return run, wait
}

// WithCmdline lists the live processes whose command line contains s
// (a domain's run dir finds its QEMU even when no pid file was written).
func WithCmdline(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if CmdlineContains(pid, s) && Alive(pid, 0) {
			out = append(out, pid)
		}
	}
	return out
}

// WaitGone waits until none of pids is alive, up to d; it reports whether
// they all went.
func WaitGone(pids []int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		alive := false
		for _, p := range pids {
			if Alive(p, 0) {
				alive = true
			}
		}
		if !alive {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BootIDPath is the kernel's id of the current boot: it changes when the
// host restarts.
const BootIDPath = "/proc/sys/kernel/random/boot_id"

// BootID reads a boot id from path (BootIDPath unless a test gives
// another).
func BootID(path string) (string, error) {
	if path == "" {
		path = BootIDPath
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// ThreadNamed returns the id of pid's thread whose name (comm) is comm,
// or 0.
func ThreadNamed(pid int, comm string) int {
	tids, _ := Threads(pid)
	for _, tid := range tids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/comm", pid, tid))
		if err == nil && strings.TrimSpace(string(b)) == comm {
			return tid
		}
	}
	return 0
}

// FDsOf returns the numbers of pid's open descriptors that are the file
// want (same device and inode).
func FDsOf(pid int, want os.FileInfo) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if fi, err := os.Stat(fmt.Sprintf("/proc/%d/fd/%d", pid, n)); err == nil && os.SameFile(fi, want) {
			out = append(out, n)
		}
	}
	return out, nil
}

// MemInfo is /proc/meminfo: each field's number (kB for sizes, a count
// for HugePages_*), by name without the colon.
func MemInfo() (map[string]int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	return parseMemInfo(string(b)), nil
}

func parseMemInfo(s string) map[string]int64 {
	m := map[string]int64{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			m[strings.TrimSuffix(f[0], ":")] = n
		}
	}
	return m
}
