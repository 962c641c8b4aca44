package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/engine/qemu/qmp"
)

// BackupDisks implements engine.DiskBackup: one QMP transaction starts a
// full blockdev-backup of every disk (so all copies share one instant),
// into target nodes opened from fd sets; it waits for every job's
// BLOCK_JOB_COMPLETED and removes the targets again.
func (i *instance) BackupDisks(ctx context.Context, targets []engine.BackupTarget, progress func(done, total int64)) error {
	events, stop := i.mon.Subscribe()
	defer stop()
	var opened backupNodes
	defer i.removeBackupNodes(&opened)
	// First (deferred last): whatever ended the copy, jobs of ours that
	// still run (a cancel that raced with the transaction) are ended, or
	// their targets could not be removed.
	defer i.endBackupJobs(events, &opened)
	actions, pending, err := i.addBackupNodes(ctx, targets, &opened)
	if err != nil {
		return err
	}
	if err := i.mon.Execute(ctx, "transaction", map[string]any{"actions": actions}, nil); err != nil {
		return fmt.Errorf("starting the disk copies: %w", err)
	}
	return i.waitBackups(ctx, events, pending, progress)
}

// A backup's copy buffers: backupWorkers requests of backupChunk bytes.
const (
	backupWorkers = 8
	backupChunk   = 1 << 20
)

// backupNodes are the target nodes and fd sets a backup has added, to be
// removed whatever its outcome.
type backupNodes struct {
	nodes []string
	sets  []int
}

// removeBackupNodes removes the nodes, then the fd sets, of a backup
// (with a fresh deadline: the backup's context may be done).
func (i *instance) removeBackupNodes(b *backupNodes) {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range b.nodes {
		i.mon.Execute(c, "blockdev-del", map[string]any{"node-name": n}, nil)
	}
	for _, s := range b.sets {
		i.mon.Execute(c, "remove-fd", map[string]any{"fdset-id": s}, nil)
	}
}

// addBackupNodes opens each target as a node (recorded in opened as it
// goes) and returns the transaction's backup actions and the jobs pending.
func (i *instance) addBackupNodes(ctx context.Context, targets []engine.BackupTarget, opened *backupNodes) ([]map[string]any, map[string]bool, error) {
	var actions []map[string]any
	pending := map[string]bool{}
	for _, t := range targets {
		set, err := i.addFDs(ctx, t.Path, true)
		if err != nil {
			return nil, nil, fmt.Errorf("disk %s: %w", t.Disk, err)
		}
		opened.sets = append(opened.sets, set)
		node := "bk-" + t.Disk
		// One a daemon killed mid-backup left behind is removed first
		// (the domain's lock keeps two backups from running at once).
		i.mon.Execute(ctx, "blockdev-del", map[string]any{"node-name": node}, nil)
		add := map[string]any{"driver": "raw", "node-name": node,
			"file": map[string]any{"driver": "file", "filename": fmt.Sprintf("/dev/fdset/%d", set), "locking": "off"}}
		// Noted before it is asked for: a cancel may end the call after
		// QEMU made the node (deleting one never made is harmless).
		opened.nodes = append(opened.nodes, node)
		if err := i.mon.Execute(ctx, "blockdev-add", add, nil); err != nil {
			return nil, nil, fmt.Errorf("disk %s: opening the copy: %w", t.Disk, err)
		}
		actions = append(actions, map[string]any{"type": "blockdev-backup", "data": map[string]any{
			"job-id": node, "device": "drive-" + t.Disk, "target": node, "sync": "full",
			// QEMU's default is 64 copies of up to 1 MiB in flight: 64
			// MiB that the domain's memory limit does not count. 8 keep a
			// local disk busy and stay in the overhead's margin.
			"x-perf": map[string]any{"max-workers": backupWorkers, "max-chunk": backupChunk}}})
		pending[node] = true
	}
	return actions, pending, nil
}

// waitBackups waits until every pending job has completed, reporting
// progress as it goes; a failed job, QEMU's exit or ctx ends it.
func (i *instance) waitBackups(ctx context.Context, events <-chan qmp.Event, pending map[string]bool, progress func(done, total int64)) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for len(pending) > 0 {
		select {
		case ev, ok := <-events:
			if !ok {
				return fmt.Errorf("qemu exited during the disk copy")
			}
			if err := backupEvent(ev, pending); err != nil {
				return err
			}
		case <-tick.C:
			if progress != nil {
				i.backupProgress(ctx, progress)
			}
		case <-ctx.Done():
			return ctx.Err() // endBackupJobs cancels what still runs
		}
	}
	return nil
}

// endBackupJobs cancels the backup's jobs that still run and waits (10 s
// at most) until QEMU says each has ended: a job still running holds its
// target node, which could then not be removed, and the next backup
// would find it.
func (i *instance) endBackupJobs(events <-chan qmp.Event, b *backupNodes) {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var jobs []blockJob
	if i.mon.Execute(c, "query-block-jobs", nil, &jobs) != nil {
		return
	}
	pending := map[string]bool{}
	for _, j := range jobs {
		if slices.Contains(b.nodes, j.Device) {
			pending[j.Device] = true
			i.mon.Execute(c, "block-job-cancel", map[string]any{"device": j.Device, "force": true}, nil)
		}
	}
	deadline := c.Done()
	for len(pending) > 0 {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Name == "BLOCK_JOB_COMPLETED" || ev.Name == "BLOCK_JOB_CANCELLED" {
				var d struct {
					Device string `json:"device"`
				}
				json.Unmarshal(ev.Data, &d)
				delete(pending, d.Device)
			}
		case <-deadline:
			return
		}
	}
}

// backupEvent takes a finished job out of pending, or says why it failed;
// other events, and other jobs', are ignored.
func backupEvent(ev qmp.Event, pending map[string]bool) error {
	if ev.Name != "BLOCK_JOB_COMPLETED" && ev.Name != "BLOCK_JOB_CANCELLED" {
		return nil
	}
	var d struct {
		Device string `json:"device"`
		Error  string `json:"error"`
	}
	json.Unmarshal(ev.Data, &d)
	if !pending[d.Device] {
		return nil
	}
	if d.Error != "" {
		return fmt.Errorf("copying disk %s: %s", d.Device, d.Error)
	}
	if ev.Name == "BLOCK_JOB_CANCELLED" {
		return fmt.Errorf("copying disk %s: cancelled", d.Device)
	}
	delete(pending, d.Device)
	return nil
}

// backupProgress reports the jobs' bytes done of their total.
func (i *instance) backupProgress(ctx context.Context, progress func(done, total int64)) {
	var jobs []blockJob
	if i.mon.Execute(ctx, "query-block-jobs", nil, &jobs) == nil {
		var done, total int64
		for _, j := range jobs {
			done, total = done+j.Offset, total+j.Len
		}
		progress(done, total)
	}
}
