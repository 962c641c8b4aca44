package domain

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/procfs"
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
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, d := range ds {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			st.Domains[i] = m.sampleOne(ctx, d, st.MemTotalKiB)
		}()
	}
	wg.Wait()
	sort.Slice(st.Domains, func(i, j int) bool { return st.Domains[i].ID < st.Domains[j].ID })
	return st
}

func (m *Manager) sampleOne(ctx context.Context, d *dom, memTotalKiB int64) api.DomainStats {
	if !d.mu.TryLock() {
		// Busy (creating, migrating): report what we last knew.
		v := m.current(d)
		return api.DomainStats{Name: v.Spec.Name, ID: v.ID, Flags: v.Flags, CPUSec: v.CPUTime, Tenant: d.tenant,
			MemKiB: int64(v.Spec.MemoryMiB) << 10, MaxMemKiB: int64(v.Spec.MaxMemMiB) << 10, VCPUs: v.Spec.VCPUs}
	}
	defer d.mu.Unlock()
	v := m.view(d)
	s := api.DomainStats{Name: v.Spec.Name, ID: v.ID, Flags: v.Flags, CPUSec: v.CPUTime, PID: v.PID, Tenant: d.tenant,
		MemKiB: int64(v.Spec.MemoryMiB) << 10, MaxMemKiB: int64(v.Spec.MaxMemMiB) << 10,
		VCPUs: v.Spec.VCPUs, Nets: len(v.Spec.Vifs), VBDs: len(v.Spec.Disks)}
	if d.inst != nil {
		qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		if b, err := d.inst.Balloon(qctx); err == nil && b > 0 {
			s.MemKiB, s.BalloonKiB = b>>10, b>>10
		}
		if bs, err := d.inst.BlockStats(qctx); err == nil {
			s.Disks = diskStats(v.Spec.Disks, bs)
			for _, b := range bs {
				s.VBDRd += b.ReadOps
				s.VBDWr += b.WriteOps
				s.VBDRdBytes += b.ReadBytes
				s.VBDWrBytes += b.WriteBytes
			}
		}
		cancel()
		for _, tid := range d.inst.VCPUThreads() {
			if run, wait, err := procfs.SchedStat(v.PID, tid); err == nil {
				s.RunNs += run
				s.WaitNs += wait
			}
		}
		for i, tap := range d.rec.Taps {
			rx, tx, rxp, txp := m.tapCounters(tap)
			s.NetTxKiB += rx >> 10
			s.NetRxKiB += tx >> 10
			s.NetTxBytes += rx
			s.NetRxBytes += tx
			// The tap's rx is what the guest sent.
			s.Vifs = append(s.Vifs, api.VifStats{Index: i, Tap: tap, RxBytes: tx, TxBytes: rx, RxPackets: txp, TxPackets: rxp})
		}
	}
	if memTotalKiB > 0 {
		s.MemPct = 100 * float64(s.MemKiB) / float64(memTotalKiB)
	}
	return s
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
