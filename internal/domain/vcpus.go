package domain

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/procfs"
)

// VCPUSet plugs or unplugs vCPUs of a running domain until n are present
// (xl vcpu-set), within the maxvcpus it booted with. The ledger counts
// maxvcpus from the start, so nothing is admitted or freed: the host is
// never oversold by a hot-plug. A new vCPU is offline in the guest until
// it onlines it (a udev rule, or echo 1 > /sys/devices/system/cpu/cpuN/online).
func (m *Manager) VCPUSet(ctx context.Context, name string, n int) (err error) {
	defer m.after(m.about(ctx, name), api.EvResized, fmt.Sprintf("vcpus %d", n), &err)
	d, err := m.lockRunning(name)
	if err != nil {
		return err
	}
	defer d.mu.Unlock()
	spec := d.rec.Spec
	if n < 1 || n > spec.MaxVCPUs {
		return api.Errorf(api.ErrInvalid, "vcpu-set %s %d: must be between 1 and maxvcpus (%d); maxvcpus is fixed at boot, raise it in the domain file and restart", name, n, spec.MaxVCPUs)
	}
	hp, ok := d.inst.(engine.VCPUHotplug)
	if !ok {
		return api.Errorf(api.ErrUnavailable, "this engine cannot hot-plug vCPUs")
	}
	if err := hp.SetVCPUs(ctx, n); err != nil {
		m.recordVCPUs(ctx, d)
		return fmt.Errorf("vcpu-set %s %d: %w", name, n, err)
	}
	// A new vCPU thread gets the domain's cpus= affinity like the others.
	threads := d.inst.VCPUThreads()
	if spec.CPUs != "" {
		if err := pinVCPUs(d.inst.PID(), threads, spec.CPUs, m.o.HostCPUs); err != nil {
			m.o.Log.Warn("pinning hot-plugged vCPUs", "name", name, "err", err)
		}
	}
	return m.recordVCPUs(ctx, d)
}

// recordVCPUs saves the vCPUs present (and their threads, in the engine
// state) after a hot-plug, whole or partial: a restart boots with them.
func (m *Manager) recordVCPUs(ctx context.Context, d *dom) error {
	if threads := d.inst.VCPUThreads(); len(threads) > 0 {
		d.rec.Spec.VCPUs = len(threads)
	}
	d.rec.Engine = d.inst.State()
	return m.save(ctx, d)
}

// VCPUList reports a domain's vCPUs (xl vcpu-list): each present one
// with the host CPU it last ran on, its state, CPU time and affinity,
// then the free slots up to maxvcpus as offline.
func (m *Manager) VCPUList(name string) ([]api.VCPU, error) {
	d, err := m.lockRunning(name)
	if err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	pid := d.inst.PID()
	paused := d.rec.State == api.StatePaused
	out := []api.VCPU{}
	threads := d.inst.VCPUThreads()
	for i, tid := range threads {
		v := api.VCPU{VCPU: i, Online: true, CPU: -1, State: "b", ThreadID: tid, Affinity: "all"}
		if st, err := procfs.ReadStat(pid, tid); err == nil {
			v.CPU, v.TimeSec = st.CPU, st.CPUSeconds()
			if st.State == 'R' {
				v.State = "r"
			}
		}
		if paused {
			v.State = "p"
		}
		var set unix.CPUSet
		if unix.SchedGetaffinity(tid, &set) == nil && set.Count() < m.o.HostCPUs {
			v.Affinity = cpuSetString(&set, m.o.HostCPUs)
		}
		out = append(out, v)
	}
	for i := len(threads); i < d.rec.Spec.MaxVCPUs; i++ {
		out = append(out, api.VCPU{VCPU: i, CPU: -1, State: "-", Affinity: "-"})
	}
	return out, nil
}

// cpuSetString renders a CPU set as a list with ranges (0-3,6).
func cpuSetString(set *unix.CPUSet, n int) string {
	s := ""
	for c := 0; c < n; c++ {
		if !set.IsSet(c) {
			continue
		}
		end := c
		for end+1 < n && set.IsSet(end+1) {
			end++
		}
		if s != "" {
			s += ","
		}
		if end > c {
			s += fmt.Sprintf("%d-%d", c, end)
		} else {
			s += fmt.Sprint(c)
		}
		c = end
	}
	return s
}
