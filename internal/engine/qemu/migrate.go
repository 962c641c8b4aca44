package qemu

import (
	"context"
	"encoding/json"
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

// MigrateTo streams the VM's state into w (a pipe, file or socket) through
// QMP's fd passing: QEMU's seccomp filter forbids exec: URIs, and an fd
// lets the daemon hash, frame or encrypt the stream. Everything but the
// final `migrate` is done before o.Start is called, so a live migration
// prepares the source while the destination starts.
func (i *instance) MigrateTo(ctx context.Context, w *os.File, o engine.MigrateOptions) (engine.MigrationStats, error) {
	// The default 128 MiB/s cap dominates total time; lift it. Dirtying
	// faster than the link triggers auto-converge (vCPU throttling).
	params := map[string]any{"max-bandwidth": int64(1) << 40, "tls-creds": "", "tls-hostname": ""}
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
	if o.Start != nil {
		if err := o.Start(ctx); err != nil {
			i.mon.Execute(context.Background(), "closefd", map[string]any{"fdname": "migout"}, nil)
			return engine.MigrationStats{}, err
		}
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
			return st.stats(), errors.New("qemu exited during the state transfer: " + tailLog(i.st.logFile()))
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// addTLS creates a QEMU pre-shared-key TLS credentials object from dir.
// A client presents user and reads the key now (the dir is removed at
// once); a server reads it at each handshake (GnuTLS keeps the file
// name), so its dir stays until StopServingDisks. Either way the file is
// readable by this QEMU's uid only, and the key serves one migration.
func (i *instance) addTLS(ctx context.Context, id, dir, endpoint, user string) error {
	if endpoint == "server" {
		i.setMu.Lock()
		i.pskDir = dir
		i.setMu.Unlock()
	} else {
		defer os.RemoveAll(dir)
	}
	i.mon.Execute(ctx, "object-del", map[string]any{"id": id}, nil) // a leftover from a failed run
	args := map[string]any{"qom-type": "tls-creds-psk", "id": id, "dir": dir, "endpoint": endpoint}
	if endpoint == "client" {
		args["username"] = user
	}
	if err := i.mon.Execute(ctx, "object-add", args, nil); err != nil {
		return fmt.Errorf("loading the migration credentials into QEMU: %w", err)
	}
	return nil
}

// MigrateFrom loads state from r into a VM started with -incoming defer.
// Completion is taken from QEMU's MIGRATION event, so the guest can be
// resumed the moment its state is in (the poll behind it is a fallback).
func (i *instance) MigrateFrom(ctx context.Context, r *os.File, o engine.IncomingOptions) error {
	events, stop := i.mon.Subscribe()
	defer stop()
	caps := []map[string]any{{"capability": "events", "state": true}}
	if err := i.mon.Execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}, nil); err != nil {
		return err
	}
	if err := i.mon.ExecuteFD(ctx, "getfd", map[string]any{"fdname": "migin"}, nil, r); err != nil {
		return fmt.Errorf("passing the restore stream to QEMU: %w", err)
	}
	if err := i.mon.Execute(ctx, "migrate-incoming", map[string]any{"uri": "fd:migin"}, nil); err != nil {
		return err
	}
	if o.Listening != nil {
		o.Listening()
	}
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return errors.New("qemu exited during the state transfer: " + tailLog(i.st.logFile()))
			}
			if ev.Name != "MIGRATION" {
				continue
			}
			var d struct {
				Status string `json:"status"`
			}
			json.Unmarshal(ev.Data, &d)
			switch d.Status {
			case "completed":
				// "completed" comes before QEMU's post-load step (which
				// leaves "inmigrate"); wait for that step, briefly.
				for {
					done, err := i.incomingDone(ctx)
					if done || err != nil {
						return err
					}
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(time.Millisecond):
					}
				}
			case "failed", "cancelled":
				return errors.New("qemu: incoming migration " + d.Status + ": " + tailLog(i.st.logFile()))
			}
		case <-poll.C:
			if done, err := i.incomingDone(ctx); done || err != nil {
				return err
			}
		case <-ctx.Done():
			i.mon.Execute(context.Background(), "migrate_cancel", nil, nil)
			return ctx.Err()
		case <-i.exited:
			return errors.New("qemu exited during the state transfer: " + tailLog(i.st.logFile()))
		}
	}
}

// incomingDone reports whether an incoming VM has left "inmigrate".
func (i *instance) incomingDone(ctx context.Context) (bool, error) {
	var st migrationStatus
	if err := i.mon.Execute(ctx, "query-migrate", nil, &st); err != nil {
		return false, err
	}
	switch st.Status {
	case "completed":
		return true, nil
	case "failed", "cancelled":
		if st.ErrorDesc == "" {
			st.ErrorDesc = st.Status
		}
		return false, errors.New("qemu: migration " + st.ErrorDesc)
	}
	s, err := i.mon.QueryStatus(ctx)
	if err != nil {
		return false, err
	}
	switch s.Status {
	case "inmigrate":
		return false, nil
	case "paused", "running", "postmigrate":
		return true, nil
	}
	return false, fmt.Errorf("qemu: incoming state ended as %q", s.Status)
}
