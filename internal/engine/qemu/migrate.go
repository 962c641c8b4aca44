package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ringfence/ringfence/internal/engine"
)

// migrationStatus is the part of query-migrate we read.
type migrationStatus struct {
	Status           string `json:"status"`
	ErrorDesc        string `json:"error-desc"`
	TotalTime        int64  `json:"total-time"`
	Downtime         int64  `json:"downtime"`
	ExpectedDowntime int64  `json:"expected-downtime"`
	RAM              *struct {
		Transferred    int64 `json:"transferred"`
		Remaining      int64 `json:"remaining"`
		DirtyPagesRate int64 `json:"dirty-pages-rate"`
		PageSize       int64 `json:"page-size"`
	} `json:"ram"`
}

func (st migrationStatus) stats() engine.MigrationStats {
	out := engine.MigrationStats{Status: st.Status, TotalMs: st.TotalTime, DowntimeMs: st.Downtime, ExpectedDownMs: st.ExpectedDowntime}
	if st.RAM != nil {
		out.TransferredB, out.RemainingB = st.RAM.Transferred, st.RAM.Remaining
		out.DirtyRateBps = st.RAM.DirtyPagesRate * st.RAM.PageSize
	}
	return out
}

// MigrateTo streams the VM's state into w (a pipe or file) through QMP's
// fd passing: QEMU's seccomp filter forbids exec: URIs, and an fd lets the
// daemon hash and frame the stream.
func (i *instance) MigrateTo(ctx context.Context, w *os.File, o engine.MigrateOptions) (engine.MigrationStats, error) {
	// The default 128 MiB/s cap dominates total time; lift it. Dirtying
	// faster than the link triggers auto-converge (vCPU throttling).
	params := map[string]any{"max-bandwidth": int64(1) << 40}
	if o.DowntimeMs > 0 {
		params["downtime-limit"] = o.DowntimeMs
	}
	if err := i.mon.Execute(ctx, "migrate-set-parameters", params, nil); err != nil {
		return engine.MigrationStats{}, err
	}
	caps := []map[string]any{{"capability": "auto-converge", "state": true}}
	if err := i.mon.Execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}, nil); err != nil {
		return engine.MigrationStats{}, err
	}
	if err := i.mon.ExecuteFD(ctx, "getfd", map[string]any{"fdname": "migout"}, nil, w); err != nil {
		return engine.MigrationStats{}, fmt.Errorf("passing the stream to QEMU: %w", err)
	}
	if err := i.mon.Execute(ctx, "migrate", map[string]any{"uri": "fd:migout"}, nil); err != nil {
		return engine.MigrationStats{}, err
	}
	return i.waitOut(ctx, o.Progress)
}

// waitOut polls an outgoing stream until it completes or fails.
func (i *instance) waitOut(ctx context.Context, progress func(engine.MigrationStats)) (engine.MigrationStats, error) {
	last := time.Time{}
	for {
		var st migrationStatus
		if err := i.mon.Execute(ctx, "query-migrate", nil, &st); err != nil {
			return engine.MigrationStats{}, err
		}
		switch st.Status {
		case "completed":
			return st.stats(), nil
		case "failed", "cancelled":
			if st.ErrorDesc == "" {
				st.ErrorDesc = st.Status
			}
			return st.stats(), errors.New("qemu: migration " + st.ErrorDesc)
		}
		if progress != nil && time.Since(last) > 100*time.Millisecond {
			progress(st.stats())
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			i.mon.Execute(context.Background(), "migrate_cancel", nil, nil)
			return st.stats(), ctx.Err()
		case <-i.exited:
			return st.stats(), errors.New("qemu exited during the state transfer: " + tailLog(i.st.RunDir))
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// MigrateFrom loads state from r into a VM started with -incoming defer.
func (i *instance) MigrateFrom(ctx context.Context, r *os.File) error {
	if err := i.mon.ExecuteFD(ctx, "getfd", map[string]any{"fdname": "migin"}, nil, r); err != nil {
		return fmt.Errorf("passing the restore stream to QEMU: %w", err)
	}
	if err := i.mon.Execute(ctx, "migrate-incoming", map[string]any{"uri": "fd:migin"}, nil); err != nil {
		return err
	}
	return i.waitMigration(ctx, "query-migrate")
}

func (i *instance) waitMigration(ctx context.Context, query string) error {
	for {
		var st migrationStatus
		if err := i.mon.Execute(ctx, query, nil, &st); err != nil {
			return err
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			if st.ErrorDesc == "" {
				st.ErrorDesc = st.Status
			}
			return errors.New("qemu: migration " + st.ErrorDesc)
		}
		// An incoming VM reports completion by leaving "inmigrate".
		if st.Status == "" {
			s, err := i.mon.QueryStatus(ctx)
			if err != nil {
				return err
			}
			if s.Status != "inmigrate" {
				if s.Status == "paused" || s.Status == "running" || s.Status == "postmigrate" {
					return nil
				}
				return fmt.Errorf("qemu: incoming state ended as %q", s.Status)
			}
		}
		select {
		case <-ctx.Done():
			i.mon.Execute(context.Background(), "migrate_cancel", nil, nil)
			return ctx.Err()
		case <-i.exited:
			return errors.New("qemu exited during the state transfer: " + tailLog(i.st.RunDir))
		case <-time.After(5 * time.Millisecond):
		}
	}
}
