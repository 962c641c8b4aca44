package domain

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/procfs"
)

// limits are the cgroup limits of a spec: memory = maxmem + QEMU overhead
// (so QEMU cannot grow into others), CPU weight and cap as in Xen's
// credit scheduler.
func (m *Manager) limits(spec api.DomainSpec, accel string) host.Limits {
	return host.Limits{
		MemoryBytes: int64(spec.MaxMemMiB+m.overhead(spec, accel)) << 20,
		CPUWeight:   spec.CPUWeight,
		CapPercent:  spec.Cap,
	}
}

// overhead is QEMU's memory beyond guest RAM that the ledger and the
// cgroup count: the engine's measured model for this domain (its RAM,
// vCPUs, accelerator), or the operator's fixed figure.
func (m *Manager) overhead(spec api.DomainSpec, accel string) int {
	if m.o.OverheadMiB > 0 {
		return m.o.OverheadMiB
	}
	if oe, ok := m.o.Engine.(engine.OverheadEstimator); ok {
		return oe.OverheadMiB(m.launchSpec(spec, accel, 0))
	}
	return 0
}

// pinVCPUs applies cpus= to the vCPU threads of QEMU process pid (hard
// affinity); "" or "all" lets them run anywhere. QEMU's other threads (its
// main loop, block and network I/O, the thread pool's workers, which
// inherit it) get the union of the vCPUs' CPUs, as libvirt's default
// emulatorpin does: pinned by vCPU only, a neighbour's I/O thread ran on
// the victim's CPU and showed there as 15% steal while it flooded.
func pinVCPUs(pid int, threads []int, cpus string, hostCPUs int) error {
	sets, err := host.ParseCPUList(cpus, len(threads), hostCPUs)
	if err != nil {
		return err
	}
	var union unix.CPUSet
	for i, tid := range threads {
		set := cpuSet(nil, hostCPUs)
		if sets != nil && sets[i] != nil {
			set = cpuSet(sets[i], hostCPUs)
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("vCPU %d (thread %d): %w", i, tid, err)
		}
		for c := 0; c < hostCPUs; c++ {
			if set.IsSet(c) {
				union.Set(c)
			}
		}
	}
	if len(threads) == 0 || pid <= 0 {
		return nil
	}
	return pinEmulator(pid, threads, union)
}

// cpuSet is the affinity mask of cpus, or of every host CPU for nil.
func cpuSet(cpus []int, hostCPUs int) unix.CPUSet {
	var set unix.CPUSet
	if cpus == nil {
		for c := 0; c < hostCPUs; c++ {
			set.Set(c)
		}
		return set
	}
	for _, c := range cpus {
		set.Set(c)
	}
	return set
}

// pinEmulator gives every thread of pid that is not a vCPU the mask set.
// A thread that ends meanwhile is no error.
func pinEmulator(pid int, vcpus []int, set unix.CPUSet) error {
	tids, err := procfs.Threads(pid)
	if err != nil {
		return fmt.Errorf("QEMU's threads: %w", err)
	}
	isVCPU := make(map[int]bool, len(vcpus))
	for _, t := range vcpus {
		isVCPU[t] = true
	}
	for _, tid := range tids {
		if isVCPU[tid] {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("QEMU thread %d: %w", tid, err)
		}
	}
	return nil
}

// running locks d and returns it with its live instance; callers unlock.
func (m *Manager) lockRunning(name string) (*dom, error) {
	d, err := m.get(name)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if d.inst == nil {
		d.mu.Unlock()
		return nil, api.Errorf(api.ErrConflict, "%s is %s, not running", name, d.rec.State)
	}
	return d, nil
}

// MemSet changes the balloon target (xl mem-set), within maxmem.
func (m *Manager) MemSet(ctx context.Context, name string, mib int) (err error) {
	defer m.after(m.about(ctx, name), api.EvResized, fmt.Sprintf("memory %d MiB", mib), &err)
	d, err := m.lockRunning(name)
	if err != nil {
		return err
	}
	defer d.mu.Unlock()
	if mib < 16 || mib > d.rec.Spec.MaxMemMiB {
		return api.Errorf(api.ErrInvalid, "mem-set %s %d: must be between 16 and maxmem (%d MiB); raise maxmem with mem-max first", name, mib, d.rec.Spec.MaxMemMiB)
	}
	if err := d.inst.SetBalloon(ctx, int64(mib)<<20); err != nil {
		return fmt.Errorf("balloon: %w", err)
	}
	d.rec.Spec.MemoryMiB = mib
	return m.save(ctx, d)
}

// MemMax lowers the ceiling mem-set may reach (xl mem-max). The VM's RAM
// is fixed at start, so it cannot rise above the boot-time maxmem; what is
// given up returns to the ledger.
func (m *Manager) MemMax(ctx context.Context, name string, mib int) (err error) {
	defer m.after(m.about(ctx, name), api.EvResized, fmt.Sprintf("maxmem %d MiB", mib), &err)
	d, err := m.lockRunning(name)
	if err != nil {
		return err
	}
	defer d.mu.Unlock()
	boot := d.rec.BootMaxMemMiB
	if boot == 0 {
		boot = d.rec.Spec.MaxMemMiB
	}
	if mib > boot {
		return api.Errorf(api.ErrInvalid, "mem-max %s %d: above the %d MiB this domain booted with; RAM cannot be hot-added, restart it with a larger maxmem", name, mib, boot)
	}
	if mib < d.rec.Spec.MemoryMiB {
		return api.Errorf(api.ErrInvalid, "mem-max %s %d: below the current target %d MiB; mem-set it lower first", name, mib, d.rec.Spec.MemoryMiB)
	}
	// QEMU's own overhead is that of the RAM it booted with (its dirty
	// bitmaps and tables do not shrink with the balloon).
	booted := d.rec.Spec
	booted.MaxMemMiB = boot
	over := m.overhead(booted, d.rec.Accel)
	if err := m.o.Ledger.Reserve(api.LedgerEntry{Domain: name, Tenant: d.tenant, MemoryMiB: mib, OverheadMiB: over, VCPUs: d.rec.Spec.MaxVCPUs}); err != nil {
		return err
	}
	d.rec.BootMaxMemMiB = boot
	d.rec.Spec.MaxMemMiB = mib
	if m.o.Cgroups != nil {
		l := m.limits(d.rec.Spec, d.rec.Accel)
		l.MemoryBytes = int64(mib+over) << 20
		m.o.Cgroups.Update(name, l)
	}
	return m.save(ctx, d)
}

// SchedCredit changes weight and/or cap live (negative = unchanged).
func (m *Manager) SchedCredit(ctx context.Context, name string, weight, cap int) error {
	d, err := m.lockRunning(name)
	if err != nil {
		return err
	}
	defer d.mu.Unlock()
	spec := d.rec.Spec
	if weight >= 0 {
		if weight < 1 || weight > 65535 {
			return api.Errorf(api.ErrInvalid, "weight %d: must be 1..65535 (default 256)", weight)
		}
		spec.CPUWeight = weight
	}
	if cap >= 0 {
		if cap > 100*spec.MaxVCPUs {
			return api.Errorf(api.ErrInvalid, "cap %d: at most %d (100 per vCPU); 0 removes the cap", cap, 100*spec.MaxVCPUs)
		}
		spec.Cap = cap
	}
	if m.o.Cgroups == nil {
		return api.Errorf(api.ErrUnavailable, "no cgroups on this host: weights and caps cannot be enforced")
	}
	if err := m.o.Cgroups.Update(name, m.limits(spec, d.rec.Accel)); err != nil {
		return err
	}
	d.rec.Spec = spec
	return m.save(ctx, d)
}

// VCPUPin changes the hard affinity of one vCPU (or all, vcpu < 0).
func (m *Manager) VCPUPin(ctx context.Context, name string, vcpu int, cpus string) error {
	d, err := m.lockRunning(name)
	if err != nil {
		return err
	}
	defer d.mu.Unlock()
	threads := d.inst.VCPUThreads()
	if vcpu >= len(threads) {
		return api.Errorf(api.ErrInvalid, "vcpu %d: %s has vCPUs 0-%d", vcpu, name, len(threads)-1)
	}
	sets, err := host.ParseCPUList(cpus, 1, m.o.HostCPUs)
	if err != nil {
		return api.Errorf(api.ErrInvalid, "cpus: %v", err)
	}
	// Rebuild the per-vCPU list with this change and apply it whole.
	cur, _ := host.ParseCPUList(d.rec.Spec.CPUs, len(threads), m.o.HostCPUs)
	lists := make([]string, len(threads))
	for i := range threads {
		lists[i] = "all"
		if cur != nil && cur[i] != nil {
			lists[i] = cpuString(cur[i])
		}
		if vcpu < 0 || i == vcpu {
			lists[i] = "all"
			if sets != nil {
				lists[i] = cpuString(sets[0])
			}
		}
	}
	spec := joinCPUs(lists)
	if err := pinVCPUs(d.inst.PID(), threads, spec, m.o.HostCPUs); err != nil {
		return err
	}
	d.rec.Spec.CPUs = spec
	return m.save(ctx, d)
}

func cpuString(set []int) string {
	s := ""
	for i, c := range set {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprint(c)
	}
	return s
}

func joinCPUs(lists []string) string {
	same := true
	for _, l := range lists {
		same = same && l == lists[0]
	}
	if same {
		if lists[0] == "all" {
			return ""
		}
		return lists[0]
	}
	out := ""
	for i, l := range lists {
		if i > 0 {
			out += ";"
		}
		out += l
	}
	return out
}
