package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/engine"
)

// Disks attached while the VM runs: the daemon opens the image and hands
// it over as an fd set (QEMU is unprivileged), blockdev-add makes the node
// (named like a boot-time drive, "drive-<id>") and device_add puts a
// virtio-blk device on a spare root port.

func fileDriver(path string) string {
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeDevice != 0 {
		return "host_device"
	}
	return "file"
}

// AttachDisk implements engine.BlockHotplug.
func (i *instance) AttachDisk(ctx context.Context, d engine.Disk) error {
	set, err := i.addFDs(ctx, d.Path, !d.ReadOnly)
	if err != nil {
		return err
	}
	format := d.Format
	if format == "" {
		format = "raw"
	}
	node := "drive-" + d.ID
	add := map[string]any{"driver": format, "node-name": node, "read-only": d.ReadOnly,
		"file": map[string]any{"driver": fileDriver(d.Path), "filename": fmt.Sprintf("/dev/fdset/%d", set), "locking": "off"}}
	if err := i.mon.Execute(ctx, "blockdev-add", add, nil); err != nil {
		i.mon.Execute(context.Background(), "remove-fd", map[string]any{"fdset-id": set}, nil)
		return fmt.Errorf("opening %s: %w", d.Path, err)
	}
	dev := map[string]any{"driver": "virtio-blk-pci", "drive": node, "id": d.ID, "bus": d.Port}
	if err := i.mon.Execute(ctx, "device_add", dev, nil); err != nil {
		i.mon.Execute(context.Background(), "blockdev-del", map[string]any{"node-name": node}, nil)
		i.mon.Execute(context.Background(), "remove-fd", map[string]any{"fdset-id": set}, nil)
		return fmt.Errorf("plugging disk %s: %w", d.ID, err)
	}
	i.setMu.Lock()
	if i.sets == nil {
		i.sets = map[string]int{}
	}
	i.sets[d.ID] = set
	i.setMu.Unlock()
	return nil
}

// DetachDisk implements engine.BlockHotplug: the guest must release the
// device (ACPI/PCIe unplug); QEMU then reports DEVICE_DELETED.
func (i *instance) DetachDisk(ctx context.Context, id string) error {
	if err := i.unplug(ctx, id); err != nil {
		return err
	}
	i.mon.Execute(ctx, "blockdev-del", map[string]any{"node-name": "drive-" + id}, nil)
	i.setMu.Lock()
	set, ok := i.sets[id]
	delete(i.sets, id)
	i.setMu.Unlock()
	if ok {
		i.mon.Execute(ctx, "remove-fd", map[string]any{"fdset-id": set}, nil)
	}
	return nil
}

// unplug asks the guest to release device id and waits for QEMU's
// DEVICE_DELETED.
func (i *instance) unplug(ctx context.Context, id string) error {
	events, stop := i.mon.Subscribe()
	defer stop()
	if err := i.mon.Execute(ctx, "device_del", map[string]any{"id": id}, nil); err != nil {
		return fmt.Errorf("unplugging %s: %w", id, err)
	}
	deadline := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case ev, ok := <-events:
			if !ok {
				return fmt.Errorf("qemu exited while unplugging %s", id)
			}
			var d struct {
				Device string `json:"device"`
			}
			json.Unmarshal(ev.Data, &d)
			done = ev.Name == "DEVICE_DELETED" && d.Device == id
		case <-deadline:
			return fmt.Errorf("the guest did not release %s within 30 s (in use? the guest must support PCIe hot-unplug)", id)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// ChangeMedium implements engine.BlockHotplug with the tray commands:
// open (forced: the guest may have locked it), swap, close.
func (i *instance) ChangeMedium(ctx context.Context, id, path string) error {
	i.mon.Execute(ctx, "blockdev-open-tray", map[string]any{"id": id, "force": true}, nil)
	if err := i.mon.Execute(ctx, "blockdev-remove-medium", map[string]any{"id": id}, nil); err != nil {
		return fmt.Errorf("ejecting %s: %w", id, err)
	}
	key := "cd-" + id
	i.setMu.Lock()
	old, had := i.sets[key]
	delete(i.sets, key)
	i.setMu.Unlock()
	if had {
		i.mon.Execute(ctx, "blockdev-del", map[string]any{"node-name": fmt.Sprintf("%s-%d", key, old)}, nil)
		i.mon.Execute(ctx, "remove-fd", map[string]any{"fdset-id": old}, nil)
	}
	if path != "" {
		set, err := i.addFDs(ctx, path, false)
		if err != nil {
			return err
		}
		node := fmt.Sprintf("%s-%d", key, set)
		add := map[string]any{"driver": "raw", "node-name": node, "read-only": true,
			"file": map[string]any{"driver": fileDriver(path), "filename": fmt.Sprintf("/dev/fdset/%d", set), "locking": "off"}}
		if err := i.mon.Execute(ctx, "blockdev-add", add, nil); err != nil {
			i.mon.Execute(context.Background(), "remove-fd", map[string]any{"fdset-id": set}, nil)
			return fmt.Errorf("opening %s: %w", path, err)
		}
		if err := i.mon.Execute(ctx, "blockdev-insert-medium", map[string]any{"id": id, "node-name": node}, nil); err != nil {
			i.mon.Execute(context.Background(), "blockdev-del", map[string]any{"node-name": node}, nil)
			i.mon.Execute(context.Background(), "remove-fd", map[string]any{"fdset-id": set}, nil)
			return fmt.Errorf("inserting %s: %w", path, err)
		}
		i.setMu.Lock()
		if i.sets == nil {
			i.sets = map[string]int{}
		}
		i.sets[key] = set
		i.setMu.Unlock()
	}
	return i.mon.Execute(ctx, "blockdev-close-tray", map[string]any{"id": id}, nil)
}

// Blocks implements engine.BlockHotplug from query-block.
func (i *instance) Blocks(ctx context.Context) (map[string][2]bool, error) {
	var blocks []struct {
		Device   string `json:"device"`
		QDev     string `json:"qdev"`
		Inserted *struct {
			RO bool `json:"ro"`
		} `json:"inserted"`
	}
	if err := i.mon.Execute(ctx, "query-block", nil, &blocks); err != nil {
		return nil, err
	}
	out := map[string][2]bool{}
	for _, b := range blocks {
		// Boot-time drives are named drive-<id>; disks added by
		// blockdev-add have no name and show their device's QOM path,
		// /machine/peripheral/<id>/virtio-backend.
		id := ""
		if strings.HasPrefix(b.Device, "drive-") {
			id = b.Device[6:]
		} else if rest, ok := strings.CutPrefix(b.QDev, "/machine/peripheral/"); ok {
			id, _, _ = strings.Cut(rest, "/")
		}
		if id == "" {
			continue
		}
		out[id] = [2]bool{b.Inserted != nil, b.Inserted != nil && b.Inserted.RO}
	}
	return out, nil
}

// AttachNIC implements engine.BlockHotplug: the tap queue the daemon
// opened goes to QEMU by getfd, netdev_add uses it, device_add plugs the
// NIC on its port.
func (i *instance) AttachNIC(ctx context.Context, n engine.NIC, tap *os.File) error {
	model := nicModels[n.Model]
	if model == "" {
		return fmt.Errorf("nic %s: unknown model %q", n.ID, n.Model)
	}
	if err := i.mon.ExecuteFD(ctx, "getfd", map[string]any{"fdname": "tap-" + n.ID}, nil, tap); err != nil {
		return fmt.Errorf("passing tap %s to QEMU: %w", n.Tap, err)
	}
	if err := i.mon.Execute(ctx, "netdev_add", map[string]any{"type": "tap", "id": "net-" + n.ID, "fd": "tap-" + n.ID}, nil); err != nil {
		i.mon.Execute(context.Background(), "closefd", map[string]any{"fdname": "tap-" + n.ID}, nil)
		return fmt.Errorf("opening tap %s in QEMU: %w", n.Tap, err)
	}
	dev := map[string]any{"driver": model, "netdev": "net-" + n.ID, "mac": n.MAC, "id": n.ID, "bus": n.Port}
	if mtu := hostMTU(n); mtu != nil {
		dev["host_mtu"] = n.MTU
	}
	if err := i.mon.Execute(ctx, "device_add", dev, nil); err != nil {
		i.mon.Execute(context.Background(), "netdev_del", map[string]any{"id": "net-" + n.ID}, nil)
		return fmt.Errorf("plugging NIC %s: %w", n.ID, err)
	}
	return nil
}

// DetachNIC implements engine.BlockHotplug.
func (i *instance) DetachNIC(ctx context.Context, id string) error {
	if err := i.unplug(ctx, id); err != nil {
		return err
	}
	return i.mon.Execute(ctx, "netdev_del", map[string]any{"id": "net-" + id}, nil)
}
