package ha

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Fencer keeps this host's fence deadline: the send time of the last
// lease renewal that succeeded, plus the lease's TTL, minus a margin.
// etcd extends a lease from when it receives the renewal, which is after
// it was sent, so the lease cannot end before the deadline plus the
// margin: a host that kills its HA guests by the deadline has killed
// them before any survivor may see its lease expire.
type Fencer struct {
	TTL, Margin time.Duration
	Files       Files
	Log         *slog.Logger
	// OnFence is told what it killed and why (an event, a log line).
	OnFence func(domains []string, reason string)

	mu       sync.Mutex
	deadline time.Time // zero: never renewed yet (a daemon start)
	procs    []Proc
}

// Start takes over the guard's last plan (a daemon restarted: its
// predecessor's deadline still holds) and runs the deadline check.
func (f *Fencer) Start(ctx context.Context) {
	if p, err := f.Files.readPlan(); err == nil && p.DeadlineNs > 0 {
		f.mu.Lock()
		if d := time.Now().Add(time.Duration(p.DeadlineNs - Mono())); d.After(f.deadline) {
			f.deadline = d
		}
		f.procs = p.Procs // guarded until the daemon's first look
		f.mu.Unlock()
	}
	go f.run(ctx)
}

// Renewed notes a renewal that succeeded, sent at sent.
func (f *Fencer) Renewed(sent time.Time) {
	f.mu.Lock()
	if d := sent.Add(f.TTL - f.Margin); d.After(f.deadline) {
		f.deadline = d
	}
	f.mu.Unlock()
	f.writePlan()
}

// Guard sets the HA guests' QEMUs this host must kill at the deadline.
func (f *Fencer) Guard(procs []Proc) {
	f.mu.Lock()
	same := len(procs) == len(f.procs)
	for i := 0; same && i < len(procs); i++ {
		same = procs[i] == f.procs[i]
	}
	f.procs = procs
	f.mu.Unlock()
	if !same {
		f.writePlan()
	}
}

// Deadline is the fence deadline while there are HA guests to fence.
func (f *Fencer) Deadline() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deadline, len(f.procs) > 0
}

func (f *Fencer) writePlan() {
	f.mu.Lock()
	p := Plan{DaemonPID: os.Getpid(), Procs: append([]Proc(nil), f.procs...)}
	if !f.deadline.IsZero() {
		p.DeadlineNs = Mono() + int64(time.Until(f.deadline))
	}
	f.mu.Unlock()
	if err := f.Files.WritePlan(p); err != nil {
		f.Log.Error("ha: writing the fence guard's plan", "err", err)
	}
}

// run kills the HA guests once the deadline has passed without a
// renewal; a host with none never fences.
func (f *Fencer) run(ctx context.Context) {
	t := time.NewTicker(guardTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.mu.Lock()
		due := len(f.procs) > 0 && !f.deadline.IsZero() && time.Now().After(f.deadline)
		procs := f.procs
		if due {
			f.procs = nil
		}
		f.mu.Unlock()
		if !due {
			continue
		}
		// The QEMUs' ends are not restarted here: the domain manager's
		// HA gate refuses once the deadline has passed. Only what this
		// process killed is told (the guard may have been first).
		killed := Kill(procs)
		f.writePlan()
		if len(killed) > 0 && f.OnFence != nil {
			f.OnFence(killed, "no lease renewal succeeded by the fence deadline (lease TTL minus margin)")
		}
	}
}
