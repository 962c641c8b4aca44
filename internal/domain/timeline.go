package domain

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/procfs"
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
		run, wait := procfs.ProcessSchedStat(pid)
		t.steps = append(t.steps, fmt.Sprintf("oncpu=%.0f rqwait=%.0f", float64(run)/1e6, float64(wait)/1e6))
	}
}
