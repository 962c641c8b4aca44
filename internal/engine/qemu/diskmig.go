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

// Disk copy for migration without shared storage: the destination serves
// its (new, empty) disks over NBD, the source mirrors into them in
// write-blocking mode (once in sync, every guest write lands on both), and
// the memory stream starts only after every mirror is in sync.

const nbdTLSID = "nbdtls"

// ServeDisks starts an NBD server on the listening socket l with a
// writable export per disk ID (named like the disk).
func (i *instance) ServeDisks(ctx context.Context, l *os.File, disks []string, tls *engine.StreamTLS) error {
	if err := i.mon.ExecuteFD(ctx, "getfd", map[string]any{"fdname": "nbdlisten"}, nil, l); err != nil {
		return fmt.Errorf("passing the NBD socket to QEMU: %w", err)
	}
	args := map[string]any{"addr": map[string]any{"type": "fd", "data": map[string]any{"str": "nbdlisten"}}}
	if tls != nil {
		if err := i.addTLS(ctx, nbdTLSID, tls.Dir, "server", ""); err != nil {
			return err
		}
		args["tls-creds"] = nbdTLSID
	}
	if err := i.mon.Execute(ctx, "nbd-server-start", args, nil); err != nil {
		i.StopServingDisks()
		return fmt.Errorf("starting the NBD server: %w", err)
	}
	for _, d := range disks {
		if err := i.mon.Execute(ctx, "nbd-server-add", map[string]any{"device": "drive-" + d, "name": d, "writable": true}, nil); err != nil {
			i.StopServingDisks()
			return fmt.Errorf("exporting disk %s: %w", d, err)
		}
	}
	return nil
}

// StopServingDisks ends the NBD server (and forgets its key).
func (i *instance) StopServingDisks() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	i.mon.Execute(ctx, "nbd-server-stop", nil, nil)
	i.mon.Execute(ctx, "object-del", map[string]any{"id": nbdTLSID}, nil)
	i.setMu.Lock()
	if i.pskDir != "" {
		os.RemoveAll(i.pskDir)
		i.pskDir = ""
	}
	i.setMu.Unlock()
}

type blockJob struct {
	Device string `json:"device"`
	Len    int64  `json:"len"`
	Offset int64  `json:"offset"`
	Ready  bool   `json:"ready"`
	Status string `json:"status"`
}

// MirrorDisks connects to the destination's exports through conns (one
// connected socket per disk) and mirrors each disk into it; it returns
// once all are in sync. On error everything it started is undone.
func (i *instance) MirrorDisks(ctx context.Context, targets []engine.MirrorTarget, tls *engine.StreamTLS, progress func(done, total int64)) (err error) {
	defer func() {
		if err != nil {
			i.AbortMirrors()
		}
	}()
	if tls != nil {
		if err := i.addTLS(ctx, nbdTLSID, tls.Dir, "client", tls.Username); err != nil {
			return err
		}
	}
	for _, t := range targets {
		fdname := "nbd-" + t.Disk
		if err := i.mon.ExecuteFD(ctx, "getfd", map[string]any{"fdname": fdname}, nil, t.Conn); err != nil {
			return fmt.Errorf("passing disk %s's connection to QEMU: %w", t.Disk, err)
		}
		node := map[string]any{"driver": "nbd", "node-name": "mig-" + t.Disk, "export": t.Disk,
			"server": map[string]any{"type": "fd", "str": fdname}}
		if tls != nil {
			node["tls-creds"] = nbdTLSID
		}
		if err := i.mon.Execute(ctx, "blockdev-add", node, nil); err != nil {
			return fmt.Errorf("connecting disk %s to the destination: %w", t.Disk, err)
		}
		if err := i.mon.Execute(ctx, "blockdev-mirror", map[string]any{"job-id": "mig-" + t.Disk, "device": "drive-" + t.Disk,
			"target": "mig-" + t.Disk, "sync": "full", "copy-mode": "write-blocking"}, nil); err != nil {
			return fmt.Errorf("mirroring disk %s: %w", t.Disk, err)
		}
	}
	for {
		var jobs []blockJob
		if err := i.mon.Execute(ctx, "query-block-jobs", nil, &jobs); err != nil {
			return err
		}
		var done, total int64
		ready := 0
		for _, j := range jobs {
			done, total = done+j.Offset, total+j.Len
			if j.Ready {
				ready++
			}
		}
		if len(jobs) < len(targets) {
			return errors.New("a disk mirror stopped: " + tailLog(i.st.logFile()))
		}
		if progress != nil {
			progress(done, total)
		}
		if ready == len(targets) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-i.exited:
			return errors.New("qemu exited during the disk copy")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// FinishMirrors ends in-sync mirrors after the memory stream completed
// (the guest is stopped, so the targets now equal the sources) and
// disconnects from the destination.
func (i *instance) FinishMirrors(ctx context.Context) error {
	var jobs []blockJob
	if err := i.mon.Execute(ctx, "query-block-jobs", nil, &jobs); err != nil {
		return err
	}
	for _, j := range jobs {
		// Cancelling a ready mirror completes it without switching the
		// guest over to the target.
		if err := i.mon.Execute(ctx, "block-job-cancel", map[string]any{"device": j.Device}, nil); err != nil {
			return fmt.Errorf("ending the mirror of %s: %w", j.Device, err)
		}
	}
	if err := i.waitNoJobs(ctx); err != nil {
		return err
	}
	i.dropMirrorNodes(ctx)
	return nil
}

// AbortMirrors stops any mirror at once and disconnects (failure paths).
func (i *instance) AbortMirrors() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var jobs []blockJob
	if err := i.mon.Execute(ctx, "query-block-jobs", nil, &jobs); err == nil {
		for _, j := range jobs {
			i.mon.Execute(ctx, "block-job-cancel", map[string]any{"device": j.Device, "force": true}, nil)
		}
		i.waitNoJobs(ctx)
	}
	i.dropMirrorNodes(ctx)
}

func (i *instance) waitNoJobs(ctx context.Context) error {
	for {
		var jobs []json.RawMessage
		if err := i.mon.Execute(ctx, "query-block-jobs", nil, &jobs); err != nil {
			return err
		}
		if len(jobs) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (i *instance) dropMirrorNodes(ctx context.Context) {
	var nodes []struct {
		NodeName string `json:"node-name"`
	}
	if err := i.mon.Execute(ctx, "query-named-block-nodes", map[string]any{"flat": true}, &nodes); err == nil {
		for _, n := range nodes {
			if len(n.NodeName) > 4 && n.NodeName[:4] == "mig-" {
				i.mon.Execute(ctx, "blockdev-del", map[string]any{"node-name": n.NodeName}, nil)
			}
		}
	}
	i.mon.Execute(ctx, "object-del", map[string]any{"id": nbdTLSID}, nil)
}
