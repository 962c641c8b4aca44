package usage

import (
	"math/bits"

	"github.com/ringfence/ringfence/internal/api"
)

// Raw is one reading of a running domain's counters as their sources
// keep them: cumulative since each source was made (a QEMU, a cgroup, a
// tap, a vCPU thread), so they start again at zero with a new one.
type Raw struct {
	// Incarnation names the QEMU the counters belong to; a new one means
	// every source began again at zero.
	Incarnation string
	// CPUNs is the cgroup's CPU time; -1: not measured this time.
	CPUNs int64
	// Steal is per vCPU thread (by tid); nil: not measured.
	Steal map[string]int64
	// Disks are per device (by id); nil: not measured.
	Disks map[string]DiskIO
	// Vifs are per vif (by MAC), as the guest sees them; nil: not measured.
	Vifs map[string]api.UsageNet
}

// DiskIO is one disk's counters.
type DiskIO struct {
	RdBytes, WrBytes, RdOps, WrOps int64 `json:",omitempty"`
}

// meter turns raw readings into running totals that never go down: Base
// holds what earlier incarnations (and sources that started again) had
// counted, Last the current sources' latest values.
type meter struct {
	Inc   string                  `json:"inc,omitempty"`
	Base  api.UsageCounters       `json:"base"`
	CPU   int64                   `json:"cpu,omitempty"`
	Steal map[string]int64        `json:"steal,omitempty"`
	Disks map[string]DiskIO       `json:"disks,omitempty"`
	Vifs  map[string]api.UsageNet `json:"vifs,omitempty"`
}

// observe takes a reading. A source whose value went down started again
// (a vCPU unplugged and plugged, a disk re-attached): what it had counted
// moves to Base, so nothing is counted twice or lost.
func (m *meter) observe(r Raw) {
	if r.Incarnation != m.Inc {
		m.Base = m.totals()
		*m = meter{Inc: r.Incarnation, Base: m.Base}
	}
	if r.CPUNs >= 0 {
		if r.CPUNs < m.CPU {
			m.Base.CPUNs += m.CPU
		}
		m.CPU = r.CPUNs
	}
	if r.Steal != nil {
		m.Steal = observeMap(m.Steal, r.Steal, func(_ string, v int64) { m.Base.StealNs += v }, func(a, b int64) bool { return a < b })
	}
	if r.Disks != nil {
		m.Disks = observeMap(m.Disks, r.Disks, func(_ string, d DiskIO) { addDisk(&m.Base, d) }, func(a, b DiskIO) bool {
			return a.RdBytes < b.RdBytes || a.WrBytes < b.WrBytes || a.RdOps < b.RdOps || a.WrOps < b.WrOps
		})
	}
	if r.Vifs != nil {
		m.Vifs = observeMap(m.Vifs, r.Vifs, func(mac string, n api.UsageNet) { addNet(&m.Base, mac, n) }, func(a, b api.UsageNet) bool {
			return a.RxBytes < b.RxBytes || a.TxBytes < b.TxBytes || a.RxPackets < b.RxPackets || a.TxPackets < b.TxPackets
		})
	}
}

// observeMap keeps the latest value of each source; one that went down
// (less than before) is folded into the base first. Sources missing from
// the reading keep their last value (a detached disk's count stays).
func observeMap[T any](last, cur map[string]T, fold func(string, T), less func(a, b T) bool) map[string]T {
	if last == nil {
		last = map[string]T{}
	}
	for k, v := range cur {
		if old, ok := last[k]; ok && less(v, old) {
			fold(k, old)
		}
		last[k] = v
	}
	return last
}

// totals are the running totals: Base plus every source's last value.
func (m *meter) totals() api.UsageCounters {
	t := clone(m.Base)
	t.CPUNs += m.CPU
	for _, v := range m.Steal {
		t.StealNs += v
	}
	for _, d := range m.Disks {
		addDisk(&t, d)
	}
	for mac, n := range m.Vifs {
		addNet(&t, mac, n)
	}
	return t
}

func addDisk(t *api.UsageCounters, d DiskIO) {
	t.DiskRdBytes += d.RdBytes
	t.DiskWrBytes += d.WrBytes
	t.DiskRdOps += d.RdOps
	t.DiskWrOps += d.WrOps
}

// addNet adds a vif's counters to the sums and, with its MAC, to its own.
func addNet(t *api.UsageCounters, mac string, n api.UsageNet) {
	t.NetRxBytes += n.RxBytes
	t.NetTxBytes += n.TxBytes
	t.NetRxPackets += n.RxPackets
	t.NetTxPackets += n.TxPackets
	if mac == "" {
		return
	}
	if t.Vifs == nil {
		t.Vifs = map[string]api.UsageNet{}
	}
	v := t.Vifs[mac]
	v.RxBytes += n.RxBytes
	v.TxBytes += n.TxBytes
	v.RxPackets += n.RxPackets
	v.TxPackets += n.TxPackets
	t.Vifs[mac] = v
}

func clone(c api.UsageCounters) api.UsageCounters {
	if c.Vifs != nil {
		v := make(map[string]api.UsageNet, len(c.Vifs))
		for k, n := range c.Vifs {
			v[k] = n
		}
		c.Vifs = v
	}
	return c
}

// fields lists a counter set's scalar figures, for arithmetic over all of
// them at once.
func fields(c *api.UsageCounters) []*int64 {
	return []*int64{&c.CPUNs, &c.StealNs, &c.DiskRdBytes, &c.DiskWrBytes, &c.DiskRdOps, &c.DiskWrOps,
		&c.NetRxBytes, &c.NetTxBytes, &c.NetRxPackets, &c.NetTxPackets}
}

func netFields(n *api.UsageNet) []*int64 {
	return []*int64{&n.RxBytes, &n.TxBytes, &n.RxPackets, &n.TxPackets}
}

// combine applies f to each figure of a and b (a per-vif figure missing
// on one side is 0 there).
func combine(a, b api.UsageCounters, f func(x, y int64) int64) api.UsageCounters {
	out := clone(a)
	fa, fb := fields(&out), fields(&b)
	for i := range fa {
		*fa[i] = f(*fa[i], *fb[i])
	}
	for mac := range b.Vifs {
		if _, ok := out.Vifs[mac]; !ok {
			if out.Vifs == nil {
				out.Vifs = map[string]api.UsageNet{}
			}
			out.Vifs[mac] = api.UsageNet{}
		}
	}
	for mac, n := range out.Vifs {
		m := b.Vifs[mac]
		na, nb := netFields(&n), netFields(&m)
		for i := range na {
			*na[i] = f(*na[i], *nb[i])
		}
		out.Vifs[mac] = n
	}
	return out
}

// Sub is a - b (a record's delta from the totals at its ends).
func Sub(a, b api.UsageCounters) api.UsageCounters {
	return combine(a, b, func(x, y int64) int64 { return x - y })
}

// Add is a + b.
func Add(a, b api.UsageCounters) api.UsageCounters {
	return combine(a, b, func(x, y int64) int64 { return x + y })
}

// lerp is the totals at a point num/den of the way from a to b, each
// figure rounded down and exact in integers (128-bit products): a record
// split at an hour boundary between two readings gets its share, and
// the two parts add up to the whole.
func lerp(a, b api.UsageCounters, num, den int64) api.UsageCounters {
	if den <= 0 || num >= den {
		return clone(b)
	}
	if num <= 0 {
		return clone(a)
	}
	return combine(a, b, func(x, y int64) int64 {
		if y <= x {
			return x
		}
		hi, lo := bits.Mul64(uint64(y-x), uint64(num))
		q, _ := bits.Div64(hi, lo, uint64(den))
		return x + int64(q)
	})
}
