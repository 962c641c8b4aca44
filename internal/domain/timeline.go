package domain

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
)

// timeline notes when the steps of a long operation finished, and logs them
// as one line at the end: where a migration's time went, for an operator
// and for the benchmark. A nil timeline records nothing.
type timeline struct {
	t0    time.Time
	steps []string
}

func newTimeline() *timeline { return &timeline{t0: time.Now()} }

func (t *timeline) mark(step string) {
	if t != nil {
		t.steps = append(t.steps, fmt.Sprintf("%s=%.1f", step, float64(time.Since(t.t0).Microseconds())/1000))
	}
}

func (t *timeline) log(l *slog.Logger, msg, name string) {
	if t != nil {
		l.Info(msg, "name", name, "ms", strings.Join(t.steps, " "))
	}
}

// sched notes how much CPU a process has had so far and how long it
// waited for one (all its threads, /proc/PID/task/*/schedstat): whether
// a slow QEMU start was work or a busy host.
func (t *timeline) sched(pid int) {
	if t != nil {
		run, wait := schedMs(pid)
		t.steps = append(t.steps, fmt.Sprintf("oncpu=%.0f rqwait=%.0f", run, wait))
	}
}

func schedMs(pid int) (run, wait float64) {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		var r, w float64
		fmt.Sscan(string(b), &r, &w)
		run += r / 1e6
		wait += w / 1e6
	}
	return
}
