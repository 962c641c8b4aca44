package qemu

import (
	"context"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/ringfence/ringfence/internal/engine"
)

var (
	_ engine.VCPUHotplug    = (*instance)(nil)
	_ engine.PlatformEvents = (*instance)(nil)
	_ engine.CoreDumper     = (*instance)(nil)
)

// cpuSlot is one entry of query-hotpluggable-cpus: a place for a vCPU,
// filled when it has a QOM path.
type cpuSlot struct {
	Type  string         `json:"type"`
	Props map[string]int `json:"props"`
	QOM   string         `json:"qom-path"`
}

// order is the slot's place in the topology (socket, die, core, thread):
// the vCPU number the guest gives it.
func (s cpuSlot) order() [4]int {
	return [4]int{s.Props["socket-id"], s.Props["die-id"], s.Props["core-id"], s.Props["thread-id"]}
}

func (i *instance) cpuSlots(ctx context.Context) ([]cpuSlot, error) {
	var slots []cpuSlot
	if err := i.mon.Execute(ctx, "query-hotpluggable-cpus", nil, &slots); err != nil {
		return nil, err
	}
	sort.Slice(slots, func(a, b int) bool {
		x, y := slots[a].order(), slots[b].order()
		for k := range x {
			if x[k] != y[k] {
				return x[k] < y[k]
			}
		}
		return false
	})
	return slots, nil
}

// SetVCPUs implements engine.VCPUHotplug with device_add/device_del of
// CPU devices in the slots QEMU reports (-smp maxcpus made them).
func (i *instance) SetVCPUs(ctx context.Context, n int) error {
	slots, err := i.cpuSlots(ctx)
	if err != nil {
		return err
	}
	if n < 1 || n > len(slots) {
		return fmt.Errorf("%d vCPUs: this VM has room for 1 to %d", n, len(slots))
	}
	present := 0
	for _, s := range slots {
		if s.QOM != "" {
			present++
		}
	}
	for k := 0; present < n && k < len(slots); k++ {
		if slots[k].QOM != "" {
			continue
		}
		args := map[string]any{"driver": slots[k].Type, "id": fmt.Sprintf("vcpu%d", k)}
		for p, v := range slots[k].Props {
			args[p] = v
		}
		if err := i.mon.Execute(ctx, "device_add", args, nil); err != nil {
			i.loadVCPUs(ctx)
			return fmt.Errorf("plugging vCPU %d: %w", k, err)
		}
		present++
	}
	for k := len(slots) - 1; present > n && k > 0; k-- {
		if slots[k].QOM == "" {
			continue
		}
		if err := i.unplugCPU(ctx, k, slots[k].QOM); err != nil {
			i.loadVCPUs(ctx)
			return err
		}
		present--
	}
	return i.loadVCPUs(ctx)
}

// unplugCPU asks the guest to eject a vCPU (ACPI) and waits until its
// slot is empty: the guest offlines it first, which takes a while under
// TCG, and a guest that does not support CPU hot-unplug never lets go.
func (i *instance) unplugCPU(ctx context.Context, k int, qom string) error {
	// device_del takes an id or, for boot vCPUs that have none, the path.
	if err := i.mon.Execute(ctx, "device_del", map[string]any{"id": qom}, nil); err != nil {
		return fmt.Errorf("unplugging vCPU %d: %w", k, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		slots, err := i.cpuSlots(ctx)
		if err != nil {
			return err
		}
		if slots[k].QOM == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("the guest did not release vCPU %d within 30 s (does its kernel support CPU hot-unplug? is the vCPU busy?)", k)
}

// SendKeys implements engine.PlatformEvents (QMP send-key).
func (i *instance) SendKeys(ctx context.Context, keys []string) error {
	ks := make([]map[string]string, len(keys))
	for k, key := range keys {
		ks[k] = map[string]string{"type": "qcode", "data": key}
	}
	return i.mon.Execute(ctx, "send-key", map[string]any{"keys": ks}, nil)
}

// InjectNMI implements engine.PlatformEvents.
func (i *instance) InjectNMI(ctx context.Context) error {
	return i.mon.Execute(ctx, "inject-nmi", nil, nil)
}

// Wakeup implements engine.PlatformEvents.
func (i *instance) Wakeup(ctx context.Context) error {
	return i.mon.Execute(ctx, "system_wakeup", nil, nil)
}

// DumpCore implements engine.CoreDumper: QEMU writes an ELF core into
// the descriptor it is handed (it cannot open host paths: it runs
// unprivileged and sandboxed), detached, so progress can be polled.
// QEMU stops the vCPUs while it dumps and resumes them afterwards.
func (i *instance) DumpCore(ctx context.Context, w *os.File, progress func(done, total int64)) error {
	if err := i.mon.ExecuteFD(ctx, "getfd", map[string]any{"fdname": "dumpout"}, nil, w); err != nil {
		return fmt.Errorf("passing the core file to QEMU: %w", err)
	}
	args := map[string]any{"paging": false, "protocol": "fd:dumpout", "detach": true}
	if err := i.mon.Execute(ctx, "dump-guest-memory", args, nil); err != nil {
		i.mon.Execute(context.Background(), "closefd", map[string]any{"fdname": "dumpout"}, nil)
		return err
	}
	for {
		var st struct {
			Status    string `json:"status"`
			Completed int64  `json:"completed"`
			Total     int64  `json:"total"`
		}
		if err := i.mon.Execute(ctx, "query-dump", nil, &st); err != nil {
			return err
		}
		if progress != nil {
			progress(st.Completed, st.Total)
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed":
			return fmt.Errorf("QEMU could not write the core (see its log)")
		}
		select {
		case <-ctx.Done():
			// A dump cannot be cancelled in QEMU 7.2; it ends by itself.
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var _ engine.Relocatable = (*instance)(nil)

// Relocated implements engine.Relocatable.
func (i *instance) Relocated(runDir, logFile string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.st.RunDir, i.st.LogFile = runDir, logFile
}
