package qemu

import (
	"context"
	"fmt"
	"os"

	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/imagelock"
)

// SnapshotDisks implements engine.DiskSnapshotter with blockdev-snapshot:
// the overlay is opened by the daemon and handed over as an fd set (QEMU
// runs unprivileged), added as a node without its backing chain, then
// put on top of the disk's current node. QEMU reopens the old image
// read-only, from the read-only descriptor of its own fd set.
func (i *instance) SnapshotDisks(ctx context.Context, overlays []engine.Overlay) (int, error) {
	var blocks []struct {
		Device   string `json:"device"`
		Inserted *struct {
			NodeName string `json:"node-name"`
		} `json:"inserted"`
	}
	if err := i.mon.Execute(ctx, "query-block", nil, &blocks); err != nil {
		return 0, err
	}
	node := map[string]string{}
	for _, b := range blocks {
		if b.Inserted != nil {
			node[b.Device] = b.Inserted.NodeName
		}
	}
	for n, o := range overlays {
		cur, ok := node["drive-"+o.Disk]
		if !ok {
			return n, fmt.Errorf("disk %s has no image to snapshot", o.Disk)
		}
		set, err := i.addFDs(ctx, o.Path, true)
		if err != nil {
			return n, fmt.Errorf("disk %s: %w", o.Disk, err)
		}
		name := fmt.Sprintf("ov-%s-%d", o.Disk, set)
		add := map[string]any{"driver": "qcow2", "node-name": name, "backing": nil,
			"file": map[string]any{"driver": "file", "filename": fmt.Sprintf("/dev/fdset/%d", set), "locking": "off"}}
		if err := i.mon.Execute(ctx, "blockdev-add", add, nil); err != nil {
			i.mon.Execute(ctx, "remove-fd", map[string]any{"fdset-id": set}, nil)
			return n, fmt.Errorf("disk %s: opening the overlay: %w", o.Disk, err)
		}
		if err := i.mon.Execute(ctx, "blockdev-snapshot", map[string]any{"node": cur, "overlay": name}, nil); err != nil {
			i.mon.Execute(ctx, "blockdev-del", map[string]any{"node-name": name}, nil)
			return n, fmt.Errorf("disk %s: switching to the overlay: %w", o.Disk, err)
		}
		// The old image is now a backing file: a reader's locks, so a
		// clone's QEMU can read it too (and nobody may write it).
		if o.Base != "" {
			if err := i.relock(o.Base, "read"); err != nil {
				return n + 1, fmt.Errorf("disk %s: lowering the old image's lock: %w", o.Disk, err)
			}
		}
	}
	return len(overlays), nil
}

// addFDs opens path read-only (and read-write when writable) and puts
// the descriptors into a new fd set; it returns the set's id.
func (i *instance) addFDs(ctx context.Context, path string, writable bool) (int, error) {
	set := -1
	modes := []int{os.O_RDONLY}
	if writable {
		modes = append(modes, os.O_RDWR)
	}
	block := false
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeDevice != 0 {
		block = true
	}
	for n, mode := range modes {
		f, err := openImage(path, mode, block && mode == os.O_RDWR)
		if err != nil {
			return 0, err
		}
		// The last description opened carries the image's locks.
		if n == len(modes)-1 {
			if err := imagelock.Lock(f, writable); err != nil {
				f.Close()
				if set >= 0 {
					i.mon.Execute(ctx, "remove-fd", map[string]any{"fdset-id": set}, nil)
				}
				return 0, err
			}
		}
		args := map[string]any{}
		if set >= 0 {
			args["fdset-id"] = set
		}
		var out struct {
			FDSetID int `json:"fdset-id"`
		}
		err = i.mon.ExecuteFD(ctx, "add-fd", args, &out, f)
		f.Close()
		if err != nil {
			return 0, fmt.Errorf("passing %s to QEMU: %w", path, err)
		}
		set = out.FDSetID
	}
	return set, nil
}

// SnapshotInternal takes a named snapshot inside a qcow2 disk, live.
func (i *instance) SnapshotInternal(ctx context.Context, disk, name string) error {
	return i.mon.Execute(ctx, "blockdev-snapshot-internal-sync", map[string]any{"device": "drive-" + disk, "name": name}, nil)
}

// DeleteSnapshotInternal drops it again.
func (i *instance) DeleteSnapshotInternal(ctx context.Context, disk, name string) error {
	return i.mon.Execute(ctx, "blockdev-snapshot-delete-internal-sync", map[string]any{"device": "drive-" + disk, "name": name}, nil)
}
