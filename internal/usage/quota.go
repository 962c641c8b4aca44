package usage

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store"
)

// keyQuota/MONTH/KIND/NAME marks a quota that fired this month: it fires
// once, and a daemon restarted later in the month keeps enforcing it.
const keyQuota = "usage/quota/"

// monthToDate is this month's transfer (rx + tx bytes) of closed records,
// per domain and per tenant. Guarded by Ledger.mu.
type monthToDate struct {
	month    string
	dom, ten map[string]int64
}

func (m *monthToDate) reset(month string) {
	m.month, m.dom, m.ten = month, map[string]int64{}, map[string]int64{}
}

func (m *monthToDate) load(ctx context.Context, st store.Store, now time.Time) error {
	m.reset(monthOf(now.UnixNano()))
	kvs, err := st.List(ctx, keyRec+m.month+"/")
	if err != nil {
		return fmt.Errorf("reading this month's usage: %w", err)
	}
	recs := make([]api.UsageRecord, 0, len(kvs))
	for _, kv := range kvs {
		var r api.UsageRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return fmt.Errorf("usage record %s: %w (see `ringfence store check`)", kv.Key, err)
		}
		recs = append(recs, r)
	}
	m.add(recs)
	return nil
}

func (m *monthToDate) add(recs []api.UsageRecord) {
	for _, r := range recs {
		mo := monthOf(r.StartNs)
		if mo > m.month {
			m.reset(mo)
		}
		if mo != m.month {
			continue
		}
		b := r.Delta.NetRxBytes + r.Delta.NetTxBytes
		m.dom[r.Domain] += b
		m.ten[r.Alloc.Tenant] += b
	}
}

// Subject is a domain or a tenant with a monthly transfer quota.
type Subject struct {
	Tenant bool // a tenant's quota (all its domains), else a domain's
	Name   string
	Bytes  int64  // the quota
	Action string // notify, throttle:RATE, pause
}

func (s Subject) kind() string {
	if s.Tenant {
		return "tenant"
	}
	return "domain"
}

func (s Subject) String() string { return s.kind() + " " + s.Name }

// Crossing is a subject over its quota this month.
type Crossing struct {
	Subject
	Used int64
	// First is set the first time it is seen over (the event and a
	// pause happen then; a throttle is kept on at every check).
	First bool
}

// Transfer is this month's transfer (rx + tx bytes) of a domain, or with
// tenant set of a tenant's domains, the open records included.
func (l *Ledger) Transfer(name string, tenant bool) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.transfer(name, tenant)
}

func (l *Ledger) transfer(name string, tenant bool) int64 {
	month := monthOf(l.Now().UnixNano())
	if l.mtd.month != month {
		l.mtd.reset(month)
	}
	used := l.mtd.dom[name]
	if tenant {
		used = l.mtd.ten[name]
	}
	for _, ds := range l.doms {
		if tenant && ds.o.Alloc.Tenant != name || !tenant && ds.o.Domain != name {
			continue
		}
		for _, r := range ds.pending {
			if monthOf(r.StartNs) == month {
				used += r.Delta.NetRxBytes + r.Delta.NetTxBytes
			}
		}
		if monthOf(ds.o.StartNs) == month {
			t := ds.o.Meter.totals()
			used += t.NetRxBytes + t.NetTxBytes - ds.o.Start.NetRxBytes - ds.o.Start.NetTxBytes
		}
	}
	return used
}

// CheckQuotas says which subjects are over their quota this month; one
// over for the first time is marked in the store (so it fires once).
func (l *Ledger) CheckQuotas(ctx context.Context, subjects []Subject) ([]Crossing, error) {
	month := monthOf(l.Now().UnixNano())
	fired, err := l.st.List(ctx, keyQuota+month+"/")
	if err != nil {
		return nil, err
	}
	done := map[string]bool{}
	for _, kv := range fired {
		done[strings.TrimPrefix(kv.Key, keyQuota+month+"/")] = true
	}
	var out []Crossing
	for _, s := range subjects {
		if s.Bytes <= 0 {
			continue
		}
		used := l.Transfer(s.Name, s.Tenant)
		if used < s.Bytes {
			continue
		}
		k := s.kind() + "/" + s.Name
		c := Crossing{Subject: s, Used: used, First: !done[k]}
		if c.First {
			b, _ := json.Marshal(map[string]any{"used": used, "quota": s.Bytes, "action": s.Action, "at": l.Now().UTC()})
			if err := store.Put(ctx, l.st, keyQuota+month+"/"+k, b); err != nil {
				return out, fmt.Errorf("marking %s over its transfer quota: %w", s, err)
			}
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}
