package domain

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/procfs"
	"github.com/ringfence/ringfence/internal/storage"
	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/usage"
)

// The manager tells the usage ledger (Options.Usage, internal/usage)
// what each domain holds whenever it saves it (in the same store
// transaction: a change is billed exactly when it is recorded), and
// feeds it the counters of every sample.

// incarnation names a running QEMU for the ledger's meter: its counters
// (cgroup, taps, QEMU's) all start again with the next one.
func incarnation(rec record) string {
	return strconv.Itoa(rec.ID) + "@" + strconv.FormatInt(rec.StartedAt.UnixNano(), 10)
}

// usageAlloc is what d holds, as the ledger records it. Caller holds d.mu.
func (m *Manager) usageAlloc(d *dom) api.UsageAlloc {
	s := d.rec.Spec
	a := api.UsageAlloc{State: d.rec.State, Tenant: d.tenant, VCPUs: s.VCPUs, MaxMemMiB: s.MaxMemMiB, MemMiB: s.MemoryMiB}
	switch {
	case d.rec.Starting != nil:
		a.State = "" // being started: its vCPUs have not run yet
	case d.rec.Ending != nil:
		a.State = d.rec.Ending.State // its QEMU is gone; the end is carried out
	}
	for _, dk := range s.Disks {
		if dk.CDROM {
			continue
		}
		a.Disks = append(a.Disks, api.UsageDisk{VDev: dk.VDev, Bytes: m.diskSize(dk)})
	}
	for _, v := range s.Vifs {
		a.Vifs = append(a.Vifs, v.MAC)
	}
	return a
}

// diskSizes caches disks' virtual sizes (qemu-img runs once per image,
// not at every change a domain records).
var diskSizes sync.Map // "path\x00format" -> int64

func (m *Manager) diskSize(dk api.Disk) int64 {
	k := dk.Target + "\x00" + dk.Format
	if v, ok := diskSizes.Load(k); ok {
		return v.(int64)
	}
	n, err := storage.VirtualSize(dk.Target, dk.Format)
	if err != nil {
		return 0
	}
	diskSizes.Store(k, n)
	return n
}

// usageRaw reads d's counters now (nil when it has no QEMU): the
// cgroup's CPU time, the vCPU threads' steal, the taps, and QEMU's disk
// counters when it answers quickly. Caller holds d.mu.
func (m *Manager) usageRaw(ctx context.Context, d *dom) *usage.Raw {
	if d.inst == nil {
		return nil
	}
	r := m.hostCounters(d)
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if bs, err := d.inst.BlockStats(qctx); err == nil {
		r.Disks = map[string]usage.DiskIO{}
		for _, b := range bs {
			r.Disks[b.ID] = usage.DiskIO{RdBytes: b.ReadBytes, WrBytes: b.WriteBytes, RdOps: b.ReadOps, WrOps: b.WriteOps}
		}
	}
	pid := d.inst.PID()
	r.Steal = map[string]int64{}
	for _, tid := range d.inst.VCPUThreads() {
		if _, wait, err := procfs.SchedStat(pid, tid); err == nil {
			r.Steal[strconv.Itoa(tid)] = wait
		}
	}
	return r
}

// hostCounters are the counters the host keeps for d's incarnation
// (its cgroup, its taps): still there a moment after its QEMU died.
func (m *Manager) hostCounters(d *dom) *usage.Raw {
	r := &usage.Raw{Incarnation: incarnation(d.rec), CPUNs: m.cgroupCPU(d)}
	r.Vifs = map[string]api.UsageNet{}
	for i, tap := range d.rec.Taps {
		if i >= len(d.rec.Spec.Vifs) {
			break
		}
		rx, tx, rxp, txp := m.tapCounters(tap)
		// The tap's rx is what the guest sent.
		r.Vifs[d.rec.Spec.Vifs[i].MAC] = api.UsageNet{RxBytes: tx, TxBytes: rx, RxPackets: txp, TxPackets: rxp}
	}
	return r
}

// cgroupCPU is the CPU time of d's cgroup (-1: none to read).
func (m *Manager) cgroupCPU(d *dom) int64 {
	if m.o.Cgroups == nil {
		return -1
	}
	return m.o.Cgroups.CPUTime(d.rec.Spec.Name)
}

// finalReading takes the last counters of an incarnation whose QEMU
// ended, before its cgroup and taps go. Caller holds d.mu.
func (m *Manager) finalReading(d *dom) {
	if m.o.Usage == nil || d.rec.StartedAt.IsZero() || d.endWhy == "migrated" {
		return
	}
	m.o.Usage.Observe(d.rec.Spec.Name, *m.hostCounters(d))
}

// usageChange is the ledger's change for d's save (nil: none), with a
// fresh reading when a record closes. Caller holds d.mu.
func (m *Manager) usageChange(ctx context.Context, d *dom) *usage.Change {
	if m.o.Usage == nil {
		return nil
	}
	// An incoming migration's records start when the guest runs here
	// (the source bills it until the handover).
	if d.rec.Starting != nil && d.rec.Starting.Kind == kindMigrate {
		return nil
	}
	alloc := m.usageAlloc(d)
	var raw *usage.Raw
	// Handed over: the last reading was the one the destination got.
	if d.endWhy != "migrated" && m.o.Usage.Differs(d.rec.Spec.Name, alloc) {
		raw = m.usageRaw(ctx, d)
	}
	return m.o.Usage.Change(d.rec.Spec.Name, alloc, raw)
}

// account records what d holds now in a transaction of its own (a
// change not saved through save: a defined domain kept stopped).
// Caller holds d.mu.
func (m *Manager) account(ctx context.Context, d *dom) {
	if err := m.usageChange(ctx, d).Commit(ctx, m.o.Store); err != nil {
		m.o.Log.Error("recording usage", "name", d.rec.Spec.Name, "err", err)
	}
}

// usageEnd is the change that closes d's last record (nil: none):
// written with the deletion of its record. Caller holds d.mu.
func (m *Manager) usageEnd(d *dom) *usage.Change {
	if m.o.Usage == nil {
		return nil
	}
	why := d.endWhy
	if why == "" {
		why = "destroyed"
	}
	return m.o.Usage.End(d.rec.Spec.Name, nil, why)
}

// usageDiscard drops the usage record of a domain whose create failed
// (nil: none): written with the deletion of its record.
func (m *Manager) usageDiscard(name string) *usage.Change {
	if m.o.Usage == nil {
		return nil
	}
	return m.o.Usage.Discard(name)
}

// UsageTotals are a domain's running totals (the save file and the
// migration carry them).
func (m *Manager) usageTotals(name string) *api.UsageCounters {
	if m.o.Usage == nil {
		return nil
	}
	t, ok := m.o.Usage.Totals(name)
	if !ok {
		return nil
	}
	return &t
}

// readTotals takes a fresh reading of d and returns its running totals
// (nil: no ledger). Caller holds d.mu.
func (m *Manager) readTotals(ctx context.Context, d *dom) *api.UsageCounters {
	if m.o.Usage == nil {
		return nil
	}
	if r := m.usageRaw(ctx, d); r != nil {
		m.o.Usage.Observe(d.rec.Spec.Name, *r)
	}
	return m.usageTotals(d.rec.Spec.Name)
}

// seedUsage makes name's next record continue from totals (a restore,
// an incoming migration).
func (m *Manager) seedUsage(name string, totals *api.UsageCounters) {
	if m.o.Usage != nil && totals != nil {
		m.o.Usage.Seed(name, *totals)
	}
}

// sampleUsage feeds the ledger one sample's readings and writes those
// that moved a counter (and the records hour boundaries closed).
func (m *Manager) sampleUsage(ctx context.Context, raws map[string]*usage.Raw) {
	if m.o.Usage == nil {
		return
	}
	for name, r := range raws {
		if r != nil {
			m.o.Usage.Observe(name, *r)
		}
	}
	if err := m.o.Usage.Flush(ctx); err != nil {
		m.o.Log.Error("writing usage", "err", err)
	}
}

// reconcileUsage, after recovery, records what every domain holds (a
// change the last daemon made but did not record) and ends the records
// of domains that are gone.
func (m *Manager) reconcileUsage(ctx context.Context) {
	if m.o.Usage == nil {
		return
	}
	m.mu.Lock()
	ds := make([]*dom, 0, len(m.doms))
	for _, d := range m.doms {
		ds = append(ds, d)
	}
	m.mu.Unlock()
	for _, d := range ds {
		d.mu.Lock()
		m.account(ctx, d)
		d.mu.Unlock()
	}
	m.o.Usage.Reconcile(ctx, func(name string) bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		_, ok := m.doms[name]
		return ok
	})
}

// writeUsage is a store step for a transaction that carries a usage
// change too.
func writeUsage(ch *usage.Change) func(store.Tx) error {
	return func(tx store.Tx) error {
		if err := ch.Write(tx); err != nil {
			return fmt.Errorf("recording usage: %w", err)
		}
		return nil
	}
}
