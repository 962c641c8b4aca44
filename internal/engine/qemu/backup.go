package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ringfence/ringfence/internal/engine"
)

// BackupDisks implements engine.DiskBackup: one QMP transaction starts a
// full blockdev-backup of every disk (so all copies share one instant),
// into target nodes opened from fd sets; it waits for every job's
// BLOCK_JOB_COMPLETED and removes the targets again.
func (i *instance) BackupDisks(ctx context.Context, targets []engine.BackupTarget, progress func(done, total int64)) error {
	events, stop := i.mon.Subscribe()
	defer stop()
	var nodes []string
	var sets []int
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, n := range nodes {
			i.mon.Execute(c, "blockdev-del", map[string]any{"node-name": n}, nil)
		}
		for _, s := range sets {
			i.mon.Execute(c, "remove-fd", map[string]any{"fdset-id": s}, nil)
		}
	}()
	var actions []map[string]any
	pending := map[string]bool{}
	for _, t := range targets {
		set, err := i.addFDs(ctx, t.Path, true)
		if err != nil {
			return fmt.Errorf("disk %s: %w", t.Disk, err)
		}
		sets = append(sets, set)
		node := "bk-" + t.Disk
		add := map[string]any{"driver": "raw", "node-name": node,
			"file": map[string]any{"driver": "file", "filename": fmt.Sprintf("/dev/fdset/%d", set), "locking": "off"}}
		if err := i.mon.Execute(ctx, "blockdev-add", add, nil); err != nil {
			return fmt.Errorf("disk %s: opening the copy: %w", t.Disk, err)
		}
		nodes = append(nodes, node)
		actions = append(actions, map[string]any{"type": "blockdev-backup", "data": map[string]any{
			"job-id": node, "device": "drive-" + t.Disk, "target": node, "sync": "full"}})
		pending[node] = true
	}
	if err := i.mon.Execute(ctx, "transaction", map[string]any{"actions": actions}, nil); err != nil {
		return fmt.Errorf("starting the disk copies: %w", err)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for len(pending) > 0 {
		select {
		case ev, ok := <-events:
			if !ok {
				return fmt.Errorf("qemu exited during the disk copy")
			}
			if ev.Name != "BLOCK_JOB_COMPLETED" && ev.Name != "BLOCK_JOB_CANCELLED" {
				continue
			}
			var d struct {
				Device string `json:"device"`
				Error  string `json:"error"`
			}
			json.Unmarshal(ev.Data, &d)
			if !pending[d.Device] {
				continue
			}
			if d.Error != "" {
				return fmt.Errorf("copying disk %s: %s", d.Device, d.Error)
			}
			if ev.Name == "BLOCK_JOB_CANCELLED" {
				return fmt.Errorf("copying disk %s: cancelled", d.Device)
			}
			delete(pending, d.Device)
		case <-tick.C:
			if progress != nil {
				var jobs []blockJob
				if i.mon.Execute(ctx, "query-block-jobs", nil, &jobs) == nil {
					var done, total int64
					for _, j := range jobs {
						done, total = done+j.Offset, total+j.Len
					}
					progress(done, total)
				}
			}
		case <-ctx.Done():
			for n := range pending {
				i.mon.Execute(context.Background(), "block-job-cancel", map[string]any{"device": n, "force": true}, nil)
			}
			return ctx.Err()
		}
	}
	return nil
}
