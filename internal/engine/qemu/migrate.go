package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// migrationStatus is the part of query-migrate we read.
type migrationStatus struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
	TotalTime int64  `json:"total-time"`
	Downtime  int64  `json:"downtime"`
	RAM       *struct {
		Transferred int64 `json:"transferred"`
		Remaining   int64 `json:"remaining"`
	} `json:"ram"`
}

// MigrateTo streams the VM's state into w (a pipe or file) through QMP's
// fd passing: QEMU's seccomp filter forbids exec: URIs, and an fd lets the
// daemon hash and frame the stream.
func (i *instance) MigrateTo(ctx context.Context, w *os.File) error {
	// The default 128 MiB/s cap dominates save time; lift it.
	if err := i.mon.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}, nil); err != nil {
		return err
	}
	if err := i.mon.ExecuteFD(ctx, "getfd", map[string]any{"fdname": "migout"}, nil, w); err != nil {
		return fmt.Errorf("passing the save stream to QEMU: %w", err)
	}
	if err := i.mon.Execute(ctx, "migrate", map[string]any{"uri": "fd:migout"}, nil); err != nil {
		return err
	}
	return i.waitMigration(ctx, "query-migrate")
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
