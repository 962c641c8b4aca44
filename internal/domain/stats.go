package domain

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/procfs"
	"github.com/ringfence/ringfence/internal/usage"
)

// sampler keeps the last two samples so rates can be served without the
// caller waiting an interval.
type sampler struct {
	mu   sync.Mutex
	last api.Stats
}

// Sample collects cumulative counters for every running domain: vCPU run
// and wait time from schedstat, memory from the balloon, NIC bytes from the
// taps, disk operations from QMP.
func (m *Manager) Sample(ctx context.Context) (st api.Stats) {
	t0 := time.Now()
	st = api.Stats{Time: t0, CPUs: m.o.HostCPUs}
	defer func() { st.SampleMs = float64(time.Since(t0).Microseconds()) / 1000 }()
	if hm, err := host.ReadMemory(); err == nil {
		st.MemTotalKiB, st.MemFreeKiB = int64(hm.TotalMiB)<<10, int64(hm.AvailableMiB)<<10
	}
	m.mu.Lock()
	ds := make([]*dom, 0, len(m.doms))
	for _, d := range m.doms {
		ds = append(ds, d)
	}
	m.mu.Unlock()
	// Domains are sampled in parallel: most of the cost is waiting for
	// each QEMU's monitor to answer.
	st.Domains = make([]api.DomainStats, len(ds))
	raws := make([]*usage.Raw, len(ds))
	taps := m.allTapCounters()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, d := range ds {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			st.Domains[i], raws[i] = m.sampleOne(ctx, d, st.MemTotalKiB, taps)
		}()
	}
	wg.Wait()
	byName := make(map[string]*usage.Raw, len(ds))
	for i := range ds {
		byName[st.Domains[i].Name] = raws[i]
	}
	// The same reading is the usage ledger's (flushed when it moved).
	m.sampleUsage(ctx, byName)
	sort.Slice(st.Domains, func(i, j int) bool { return st.Domains[i].ID < st.Domains[j].ID })
	return st
}

// sampleOne reads one domain: its stats, and its counters as the usage
// ledger takes them (nil: not read).
func (m *Manager) sampleOne(ctx context.Context, d *dom, memTotalKiB int64, taps map[string][4]int64) (api.DomainStats, *usage.Raw) {
	if !d.mu.TryLock() {
		// Busy (creating, migrating): report what we last knew.
		v := m.current(d)
		s := api.DomainStats{Name: v.Spec.Name, ID: v.ID, Flags: v.Flags, CPUSec: v.CPUTime, Tenant: d.tenant,
			MemKiB: int64(v.Spec.MemoryMiB) << 10, MaxMemKiB: int64(v.Spec.MaxMemMiB) << 10, VCPUs: v.Spec.VCPUs}
		// The scheduler's counters need no lock (the live instance is
		// readable without it): without them this sample and the next
		// showed 0% CPU and steal for a busy guest.
		if li := d.live.Load(); li != nil {
			s.PID = li.PID()
			s.RunNs, s.WaitNs = vcpuSched(s.PID, li.VCPUThreads(), nil)
		}
		return s, nil
	}
	defer d.mu.Unlock()
	v := m.view(d)
	s := api.DomainStats{Name: v.Spec.Name, ID: v.ID, Flags: v.Flags, CPUSec: v.CPUTime, PID: v.PID, Tenant: d.tenant,
		MemKiB: int64(v.Spec.MemoryMiB) << 10, MaxMemKiB: int64(v.Spec.MaxMemMiB) << 10,
		VCPUs: v.Spec.VCPUs, Nets: len(v.Spec.Vifs), VBDs: len(v.Spec.Disks)}
	var raw *usage.Raw
	if d.inst != nil {
		raw = &usage.Raw{Incarnation: incarnation(d.rec), CPUNs: m.cgroupCPU(d), Steal: map[string]int64{}, Vifs: map[string]api.UsageNet{}}
		qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		if b, err := d.inst.Balloon(qctx); err == nil && b > 0 {
			s.MemKiB, s.BalloonKiB = b>>10, b>>10
		}
		if bs, err := d.inst.BlockStats(qctx); err == nil {
			s.Disks = diskStats(v.Spec.Disks, bs)
			raw.Disks = make(map[string]usage.DiskIO, len(bs))
			for _, b := range bs {
				raw.Disks[b.ID] = usage.DiskIO{RdBytes: b.ReadBytes, WrBytes: b.WriteBytes, RdOps: b.ReadOps, WrOps: b.WriteOps}
				s.VBDRd += b.ReadOps
				s.VBDWr += b.WriteOps
				s.VBDRdBytes += b.ReadBytes
				s.VBDWrBytes += b.WriteBytes
			}
		}
		cancel()
		s.RunNs, s.WaitNs = vcpuSched(v.PID, d.inst.VCPUThreads(), raw.Steal)
		for i, tap := range d.rec.Taps {
			var rx, tx, rxp, txp int64
			if c, ok := taps[tap]; ok {
				rx, tx, rxp, txp = c[0], c[1], c[2], c[3]
			} else {
				rx, tx, rxp, txp = m.tapCounters(tap)
			}
			s.NetTxKiB += rx >> 10
			s.NetRxKiB += tx >> 10
			s.NetTxBytes += rx
			s.NetRxBytes += tx
			// The tap's rx is what the guest sent.
			s.Vifs = append(s.Vifs, api.VifStats{Index: i, Tap: tap, RxBytes: tx, TxBytes: rx, RxPackets: txp, TxPackets: rxp})
			if i < len(v.Spec.Vifs) {
				raw.Vifs[v.Spec.Vifs[i].MAC] = api.UsageNet{RxBytes: tx, TxBytes: rx, RxPackets: txp, TxPackets: rxp}
			}
		}
	}
	if memTotalKiB > 0 {
		s.MemPct = 100 * float64(s.MemKiB) / float64(memTotalKiB)
	}
	if d.endWhy == "migrated" {
		raw = nil // handed over: the destination counts from here
	}
	return s, raw
}

// vcpuSched sums the vCPU threads' run and wait (steal) times, each
// thread's wait also put in steal when it is not nil.
func vcpuSched(pid int, tids []int, steal map[string]int64) (run, wait int64) {
	for _, tid := range tids {
		if r, w, err := procfs.SchedStat(pid, tid); err == nil {
			run, wait = run+r, wait+w
			if steal != nil {
				steal[strconv.Itoa(tid)] = w
			}
		}
	}
	return run, wait
}

// rates fills the Pct fields of cur from the previous sample.
func rates(prev, cur *api.Stats) {
	dt := cur.Time.Sub(prev.Time).Seconds()
	if dt <= 0 {
		return
	}
	cur.IntervalSec = dt
	old := map[string]api.DomainStats{}
	for _, d := range prev.Domains {
		old[d.Name] = d
	}
	for i := range cur.Domains {
		d := &cur.Domains[i]
		p, ok := old[d.Name]
		if !ok || p.PID != d.PID || d.PID == 0 {
			continue
		}
		d.CPUPct = 100 * float64(d.RunNs-p.RunNs) / 1e9 / dt
		if d.VCPUs > 0 {
			d.StealPct = 100 * float64(d.WaitNs-p.WaitNs) / 1e9 / dt / float64(d.VCPUs)
		}
	}
}

// RunSampler samples every interval until ctx ends; Stats serves the
// latest sample with rates.
func (m *Manager) RunSampler(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	prev := m.Sample(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := m.Sample(ctx)
		rates(&prev, &cur)
		m.hist.record(&prev, &cur)
		m.sampler.mu.Lock()
		m.sampler.last = cur
		m.sampler.mu.Unlock()
		prev = cur
	}
}

// Stats returns the latest sample (rates over the last interval).
func (m *Manager) Stats() api.Stats {
	m.sampler.mu.Lock()
	defer m.sampler.mu.Unlock()
	if m.sampler.last.Time.IsZero() {
		return m.Sample(context.Background())
	}
	return m.sampler.last
}

// diskStats are the engine's per-device counters under the names the
// domain file gives its disks (a device the spec does not name, e.g.
// one the engine added, keeps the engine's id).
func diskStats(disks []api.Disk, bs []engine.BlockStats) []api.DiskStats {
	vdev := map[string]string{}
	for _, dk := range disks {
		vdev[dk.Guest] = dk.VDev
	}
	out := make([]api.DiskStats, 0, len(bs))
	for _, b := range bs {
		name := vdev[b.ID]
		if name == "" {
			name = b.ID
		}
		out = append(out, api.DiskStats{VDev: name, Guest: b.ID, RdOps: b.ReadOps, WrOps: b.WriteOps, RdBytes: b.ReadBytes, WrBytes: b.WriteBytes})
	}
	return out
}
