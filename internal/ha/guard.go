// Package ha is a host's fencing for HA domains: the deadline by which
// it must kill its HA guests when it cannot renew its cluster lease
// (Fencer, in the daemon), and the fence guard, a small separate process
// that kills them at the same deadline if the daemon hangs, is stopped
// or dies (RunGuard). Ownership and takeovers are the cluster's
// (internal/cluster owner keys) and the daemon's.
package ha

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfence/ringfence/internal/procfs"
	"github.com/ringfence/ringfence/internal/safefile"
)

// GuardVerb is the hidden CLI verb that runs the fence guard.
const GuardVerb = "__fenceguard"

// GuardHelper is the small binary that runs only the guard
// (cmd/ringfence-guard), looked for next to the ringfence binary: the
// guard is locked in memory, and the whole ringfence binary locked
// ~150 MB where this one locks a few.
const GuardHelper = "ringfence-guard"

// GuardCommand is the argv that runs the guard for dir, from the
// ringfence binary at self: the helper beside it when installed, else
// the ringfence binary itself with the hidden verb. Both carry the verb,
// by which GuardPID recognises the guard.
func GuardCommand(self, dir string) []string {
	h := filepath.Join(filepath.Dir(self), GuardHelper)
	if fi, err := os.Stat(h); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return []string{h, GuardVerb, dir}
	}
	return []string{self, GuardVerb, dir}
}

// Proc is one HA guest's QEMU, named by pid and start time (a recycled
// pid is never killed).
type Proc struct {
	Domain string `json:"domain"`
	PID    int    `json:"pid"`
	Start  uint64 `json:"start"`
}

// Plan is what the daemon tells the guard, in its file (written
// atomically): whom to kill and when. DeadlineNs is on CLOCK_MONOTONIC,
// which every process of the host shares and no wall-clock jump moves.
type Plan struct {
	DaemonPID  int    `json:"daemon_pid"`
	DeadlineNs int64  `json:"deadline_ns"` // 0: no deadline (no HA guest)
	Procs      []Proc `json:"procs"`
}

// Fenced is what the guard leaves after it killed (the daemon reads it
// when it runs again, or resumes).
type Fenced struct {
	Domains []string `json:"domains"`
	AtNs    int64    `json:"at_ns"` // wall clock
	By      string   `json:"by"`
}

// Mono is now on CLOCK_MONOTONIC, in ns.
func Mono() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// Files are the guard's files in dir (STATE/ha).
type Files struct{ Dir string }

func (f Files) Plan() string   { return filepath.Join(f.Dir, "fence-plan.json") }
func (f Files) Fenced() string { return filepath.Join(f.Dir, "fenced.json") }
func (f Files) PID() string    { return filepath.Join(f.Dir, "guard.pid") }

// Relaunch is where the daemon keeps the domains fenced here that it is
// to start again here if its lease outlived the fence: a daemon killed
// and restarted meanwhile must not forget them (the guest would run
// nowhere while this host keeps its owner key).
func (f Files) Relaunch() string { return filepath.Join(f.Dir, "relaunch.json") }

// WriteRelaunch records the domains fenced here and when.
func (f Files) WriteRelaunch(fenced map[string]time.Time) error {
	out := map[string]int64{}
	for d, at := range fenced {
		out[d] = at.UnixNano()
	}
	b, _ := json.Marshal(out)
	return safefile.WriteFile(f.Relaunch(), b, 0o600)
}

// ReadRelaunch reads what WriteRelaunch wrote, dropping what is older
// than maxAge (an empty map when there is nothing).
func (f Files) ReadRelaunch(maxAge time.Duration) map[string]time.Time {
	out := map[string]time.Time{}
	var in map[string]int64
	if b, err := os.ReadFile(f.Relaunch()); err != nil || json.Unmarshal(b, &in) != nil {
		return out
	}
	for d, ns := range in {
		if at := time.Unix(0, ns); time.Since(at) <= maxAge {
			out[d] = at
		}
	}
	return out
}

// WritePlan gives the guard a new plan.
func (f Files) WritePlan(p Plan) error {
	b, _ := json.Marshal(p)
	return safefile.WriteFile(f.Plan(), b, 0o600)
}

func (f Files) readPlan() (Plan, error) {
	var p Plan
	b, err := os.ReadFile(f.Plan())
	if err != nil {
		return p, err
	}
	return p, json.Unmarshal(b, &p)
}

// ReadFenced reads (and removes) the guard's record of a fence.
func (f Files) ReadFenced() (Fenced, bool) {
	var out Fenced
	b, err := os.ReadFile(f.Fenced())
	if err != nil || json.Unmarshal(b, &out) != nil {
		return out, false
	}
	os.Remove(f.Fenced())
	return out, true
}

// GuardPID is the running guard's pid (0: none).
func (f Files) GuardPID() int {
	b, err := os.ReadFile(f.PID())
	if err != nil {
		return 0
	}
	var pid int
	fmt.Sscanf(string(b), "%d", &pid)
	if pid > 0 && procfs.CmdlineContains(pid, GuardVerb) && procfs.Alive(pid, 0) {
		return pid
	}
	return 0
}

// Kill SIGKILLs the procs still alive as named and returns their domains.
func Kill(procs []Proc) []string {
	var out []string
	for _, p := range procs {
		if procfs.Alive(p.PID, p.Start) {
			syscall.Kill(p.PID, syscall.SIGKILL)
			out = append(out, p.Domain)
		}
	}
	return out
}

// guardTick is how often the guard looks at the clock and its plan.
const guardTick = 100 * time.Millisecond

// RunGuard is the fence guard: it kills the plan's QEMUs once the
// deadline has passed, whatever the daemon is doing. It ends when the
// daemon is gone and nothing is left to guard, or after it fenced.
func RunGuard(dir string) error {
	f := Files{Dir: dir}
	lockMemory()
	if err := safefile.WriteFile(f.PID(), []byte(fmt.Sprint(os.Getpid())), 0o600); err != nil {
		return err
	}
	wd := openWatchdog()
	defer wd.close()
	for {
		p, err := f.readPlan()
		if errors.Is(err, os.ErrNotExist) {
			return nil // the host left the cluster
		}
		daemonUp := p.DaemonPID > 0 && procfs.Alive(p.DaemonPID, 0)
		live := 0
		for _, q := range p.Procs {
			if procfs.Alive(q.PID, q.Start) {
				live++
			}
		}
		switch {
		case live > 0 && p.DeadlineNs > 0 && Mono() >= p.DeadlineNs:
			done := Kill(p.Procs)
			b, _ := json.Marshal(Fenced{Domains: done, AtNs: time.Now().UnixNano(), By: "guard"})
			safefile.WriteFile(f.Fenced(), b, 0o600)
			fmt.Fprintf(os.Stderr, "fence guard: lease not renewed by the deadline: killed %v\n", done)
			if !daemonUp {
				return nil
			}
			p.Procs = nil
			f.WritePlan(p)
		case live == 0 && !daemonUp:
			return nil
		}
		wd.feed(live > 0, p.DeadlineNs)
		time.Sleep(guardTick)
	}
}

// lockMemory keeps the guard resident, since a guard paged out under
// pressure could miss its deadline (best effort: it may lack the
// privilege). Its binary's mappings are locked whole, so the kill path,
// run only at a fence, is never paged in then; every other page is
// locked once touched (MCL_ONFAULT): the Go runtime maps its heap 64 MiB
// at a time, and locking all of it held ~64 MiB more (measured: 76 MB
// resident with MCL_FUTURE alone, docs/cluster.md).
func lockMemory() {
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT); err != nil {
		unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE) // a kernel before 4.4
		return
	}
	self, err := os.Executable()
	if err != nil {
		return
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[5] != self {
			continue
		}
		var start, end uintptr
		if _, err := fmt.Sscanf(f[0], "%x-%x", &start, &end); err != nil || end <= start {
			continue
		}
		// mlock(2) by address: the range is this process's own mapping.
		unix.Syscall(unix.SYS_MLOCK, start, end-start, 0)
	}
}

// watchdog is /dev/watchdog when the host has one: armed while HA
// guests run, fed only while the fence deadline is met, so a host whose
// guard itself stops is reset by the hardware (or softdog).
type watchdog struct{ f *os.File }

// WatchdogState says what the host has (for `cluster status`).
func WatchdogState() string {
	if _, err := os.Stat("/dev/watchdog"); err != nil {
		return "none: /dev/watchdog absent (load softdog to have one); the fence guard alone fences"
	}
	return "/dev/watchdog: armed by the fence guard while HA guests run"
}

func openWatchdog() *watchdog { return &watchdog{} }

// feed arms the watchdog when there are guests to guard and feeds it
// while the deadline has not passed; with none it is closed cleanly
// (the magic 'V' disarms it).
func (w *watchdog) feed(guarding bool, deadline int64) {
	if !guarding {
		w.close()
		return
	}
	if w.f == nil {
		f, err := os.OpenFile("/dev/watchdog", os.O_WRONLY, 0)
		if err != nil {
			return
		}
		w.f = f
	}
	if deadline == 0 || Mono() < deadline {
		w.f.Write([]byte{0})
	}
}

func (w *watchdog) close() {
	if w.f != nil {
		w.f.Write([]byte("V"))
		w.f.Close()
		w.f = nil
	}
}
