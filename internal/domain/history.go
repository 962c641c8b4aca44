package domain

import (
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// The history the sampler keeps per domain, in memory only: one point a
// sample (1 s) over the last 10 minutes, and one a minute (the minute's
// mean) over the last 24 hours. It is what the web admin's graphs show;
// a daemon restart starts it afresh.
const (
	fineSpan   = 600
	coarseSpan = 24 * 60
)

// histRing is a fixed-size ring of points, oldest first when read.
type histRing struct {
	pts  []api.HistoryPoint
	next int
	full bool
}

func newRing(n int) *histRing { return &histRing{pts: make([]api.HistoryPoint, n)} }

func (r *histRing) add(p api.HistoryPoint) {
	r.pts[r.next] = p
	if r.next++; r.next == len(r.pts) {
		r.next, r.full = 0, true
	}
}

// since are the points after t (unix seconds), oldest first.
func (r *histRing) since(t int64) []api.HistoryPoint {
	var out []api.HistoryPoint
	read := func(ps []api.HistoryPoint) {
		for _, p := range ps {
			if p.Time > t {
				out = append(out, p)
			}
		}
	}
	if r.full {
		read(r.pts[r.next:])
	}
	read(r.pts[:r.next])
	return out
}

// domHistory is one domain's two rings, and the minute being averaged.
type domHistory struct {
	fine, coarse *histRing
	minute       int64 // the unix minute acc belongs to
	acc          api.HistoryPoint
	n            int
}

// history is every domain's; a domain that is no longer sampled (gone)
// is dropped.
type history struct {
	mu   sync.Mutex
	doms map[string]*domHistory
}

// record adds a sample (its rates from prev) to every domain's history.
func (h *history) record(prev, cur *api.Stats) {
	dt := cur.Time.Sub(prev.Time).Seconds()
	old := make(map[string]api.DomainStats, len(prev.Domains))
	for _, d := range prev.Domains {
		old[d.Name] = d
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.doms == nil {
		h.doms = map[string]*domHistory{}
	}
	seen := make(map[string]bool, len(cur.Domains))
	for _, d := range cur.Domains {
		seen[d.Name] = true
		dh := h.doms[d.Name]
		if dh == nil {
			dh = &domHistory{fine: newRing(fineSpan), coarse: newRing(coarseSpan)}
			h.doms[d.Name] = dh
		}
		dh.add(point(cur.Time, dt, d, old[d.Name]))
	}
	for name := range h.doms {
		if !seen[name] {
			delete(h.doms, name)
		}
	}
}

// point is one domain's figures at t: rates over dt from p (the previous
// sample of the same process; none for a new one).
func point(t time.Time, dt float64, d, p api.DomainStats) api.HistoryPoint {
	hp := api.HistoryPoint{Time: t.Unix(), CPUPct: d.CPUPct, StealPct: d.StealPct, MemMiB: float64(d.MemKiB) / 1024}
	if dt > 0 && p.PID == d.PID && d.PID != 0 {
		rate := func(a, b int64) float64 { return max(0, float64(a-b)/dt) }
		hp.DiskRdBps, hp.DiskWrBps = rate(d.VBDRdBytes, p.VBDRdBytes), rate(d.VBDWrBytes, p.VBDWrBytes)
		hp.NetRxBps, hp.NetTxBps = rate(d.NetRxBytes, p.NetRxBytes), rate(d.NetTxBytes, p.NetTxBytes)
	}
	return hp
}

// add puts p in the fine ring and folds it into its minute; a minute
// complete goes to the coarse ring as its mean.
func (dh *domHistory) add(p api.HistoryPoint) {
	dh.fine.add(p)
	m := p.Time / 60
	if dh.n > 0 && m != dh.minute {
		dh.coarse.add(dh.mean())
		dh.n = 0
	}
	if dh.n == 0 {
		dh.minute, dh.acc = m, api.HistoryPoint{}
	}
	dh.n++
	a := &dh.acc
	a.CPUPct += p.CPUPct
	a.StealPct += p.StealPct
	a.MemMiB += p.MemMiB
	a.DiskRdBps += p.DiskRdBps
	a.DiskWrBps += p.DiskWrBps
	a.NetRxBps += p.NetRxBps
	a.NetTxBps += p.NetTxBps
}

func (dh *domHistory) mean() api.HistoryPoint {
	n, a := float64(dh.n), dh.acc
	return api.HistoryPoint{Time: dh.minute * 60, CPUPct: a.CPUPct / n, StealPct: a.StealPct / n, MemMiB: a.MemMiB / n,
		DiskRdBps: a.DiskRdBps / n, DiskWrBps: a.DiskWrBps / n, NetRxBps: a.NetRxBps / n, NetTxBps: a.NetTxBps / n}
}

// History is a domain's points after since (unix seconds; 0: all):
// 1 s over the last 10 minutes and 1 min over the last 24 hours.
func (m *Manager) History(name string, since int64) (api.History, error) {
	if _, err := m.Get(name); err != nil {
		return api.History{}, err
	}
	out := api.History{Domain: name, Fine: []api.HistoryPoint{}, Coarse: []api.HistoryPoint{}}
	m.hist.mu.Lock()
	defer m.hist.mu.Unlock()
	if dh := m.hist.doms[name]; dh != nil {
		out.Fine, out.Coarse = dh.fine.since(since), dh.coarse.since(since)
		if out.Fine == nil {
			out.Fine = []api.HistoryPoint{}
		}
		if out.Coarse == nil {
			out.Coarse = []api.HistoryPoint{}
		}
	}
	return out, nil
}
