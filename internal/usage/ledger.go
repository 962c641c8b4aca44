// Package usage is the host's usage ledger: each domain's life as a
// sequence of records [start, end) in integer nanoseconds that tile time
// exactly, each with what the domain held (its allocation) and what it
// measurably used (deltas of counters that never go down), closed and
// opened on every state or shape change and on every hour boundary.
//
// Durability: a domain's open record (its start, allocation, the totals
// at its start and the meter that turns raw counters into totals) is in
// the store; a change's closing record is written in the same
// transaction as the change itself (Change.Write inside the domain
// manager's own), and readings are flushed at each sample that moved a
// counter. The raw counters live outside the daemon (the cgroup, the
// taps, QEMU), so a daemon killed at any moment finds, from the open
// record and the same counters, every second and byte again. Rating
// (prices.go) and quotas (quota.go) read the records.
package usage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store"
)

// Store keys: usage/open/DOMAIN is a domain's open record;
// usage/rec/YYYY-MM/DOMAIN/START (START: 19 digits of Unix ns) a closed
// one, under the month it belongs to (records never cross an hour, so
// never a month).
const (
	keyOpen = "usage/open/"
	keyRec  = "usage/rec/"
	// keySaved/DOMAIN are the totals of a domain whose records ended
	// with a save here: its restore continues from them (the save file's
	// header has them from before the state was written, a little less).
	keySaved = "usage/saved/"
)

const hourNs = int64(time.Hour)

// open is a domain's open record, as the store keeps it.
type open struct {
	Domain  string            `json:"domain"`
	StartNs int64             `json:"start_ns"`
	Alloc   api.UsageAlloc    `json:"alloc"`
	Start   api.UsageCounters `json:"start"` // the totals at StartNs
	Meter   meter             `json:"meter"`
	// AtNs is when the meter last read the counters.
	AtNs int64 `json:"at_ns"`
}

// dstate is a domain's open record and the records it closed since the
// last write (they go to the store with the next write of the open one,
// never after it: the store always tiles).
type dstate struct {
	o       open
	pending []api.UsageRecord
	dirty   bool
}

func (ds *dstate) clone() *dstate {
	b, _ := json.Marshal(ds.o)
	c := &dstate{dirty: ds.dirty, pending: slices.Clone(ds.pending)}
	json.Unmarshal(b, &c.o)
	return c
}

// Ledger is the host's usage ledger.
type Ledger struct {
	st  store.Store
	Now func() time.Time
	mu  sync.Mutex
	// doms are the open records, by domain.
	doms map[string]*dstate
	// seeds are the totals a restore or an incoming migration carries:
	// the domain's next record continues from them.
	seeds map[string]api.UsageCounters
	// saved are the last totals of domains saved here (keySaved).
	saved map[string]api.UsageCounters
	// mtd is this month's closed transfer, per domain and per tenant.
	mtd monthToDate
	// slots are traffic bytes per tenant and 5-minute slot not yet
	// added to the store's (the 95th percentile's samples).
	slots map[slotKey]int64
}

// New returns an empty ledger over st; Load reads what the store holds.
func New(st store.Store) *Ledger {
	return &Ledger{st: st, Now: time.Now, doms: map[string]*dstate{}, seeds: map[string]api.UsageCounters{}, saved: map[string]api.UsageCounters{}, slots: map[slotKey]int64{}}
}

// Load reads the open records and this month's transfer from the store.
func (l *Ledger) Load(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	kvs, err := l.st.List(ctx, keyOpen)
	if err != nil {
		return fmt.Errorf("reading the usage ledger: %w", err)
	}
	for _, kv := range kvs {
		var o open
		if err := json.Unmarshal(kv.Value, &o); err != nil {
			return fmt.Errorf("usage record %s: %w (see `ringfence store check`)", kv.Key, err)
		}
		l.doms[o.Domain] = &dstate{o: o}
	}
	if kvs, err = l.st.List(ctx, keySaved); err != nil {
		return fmt.Errorf("reading the usage ledger: %w", err)
	}
	for _, kv := range kvs {
		var t api.UsageCounters
		if json.Unmarshal(kv.Value, &t) == nil {
			l.saved[strings.TrimPrefix(kv.Key, keySaved)] = t
		}
	}
	return l.mtd.load(ctx, l.st, l.Now())
}

// Domains are the domains with an open record.
func (l *Ledger) Domains() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.doms))
	for n := range l.doms {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Seed makes name's next record (a restore, an incoming migration)
// continue from totals.
func (l *Ledger) Seed(name string, totals api.UsageCounters) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok := l.saved[name]; ok {
		// Saved here: never below what its records here ended with.
		totals = combine(totals, s, func(x, y int64) int64 { return max(x, y) })
	}
	l.seeds[name] = clone(totals)
}

// Totals are name's running totals as of its last reading.
func (l *Ledger) Totals(name string) (api.UsageCounters, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ds, ok := l.doms[name]
	if !ok {
		return api.UsageCounters{}, false
	}
	return ds.o.Meter.totals(), true
}

// Observe takes a reading of a running domain's counters; Flush writes
// it. A domain with no open record is not tracked yet and is skipped.
func (l *Ledger) Observe(name string, r Raw) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ds, ok := l.doms[name]; ok {
		now := l.Now().UnixNano()
		if n := ds.advance(&r, now); n > 0 {
			l.slots[slotKey{ds.o.Alloc.Tenant, now / slotNs}] += n
		}
	}
}

// advance closes the records the hour boundaries up to at end and takes
// the reading r (nil: none). Counters at a boundary between two readings
// are interpolated (exactly: the parts add up to the whole). It returns
// the bytes the vifs moved since the last reading.
func (ds *dstate) advance(r *Raw, at int64) (netBytes int64) {
	prevAt, prev := ds.o.AtNs, ds.o.Meter.totals()
	cur := prev
	if r != nil {
		ds.o.Meter.observe(*r)
		cur = ds.o.Meter.totals()
		if at > ds.o.AtNs {
			ds.o.AtNs = at
		}
		if !equalCounters(prev, cur) {
			ds.dirty = true
		}
	}
	for h := nextHour(ds.o.StartNs); h <= at; h = nextHour(ds.o.StartNs) {
		th := prev
		if r != nil {
			th = lerp(prev, cur, h-prevAt, at-prevAt)
		}
		ds.closeAt(h, th, "hour")
	}
	return cur.NetRxBytes + cur.NetTxBytes - prev.NetRxBytes - prev.NetTxBytes
}

// closeAt closes the open record at end with the totals there and opens
// the next one with the same allocation.
func (ds *dstate) closeAt(end int64, totals api.UsageCounters, reason string) {
	o := &ds.o
	if end > o.StartNs {
		ds.pending = append(ds.pending, api.UsageRecord{Domain: o.Domain, StartNs: o.StartNs, EndNs: end, Reason: reason,
			Alloc: o.Alloc, Delta: Sub(totals, o.Start), Totals: clone(totals)})
	}
	o.StartNs, o.Start = end, clone(totals)
	ds.dirty = true
}

func nextHour(ns int64) int64 { return (ns/hourNs + 1) * hourNs }

// Flush closes the records hour boundaries ended and writes every domain
// whose counters moved since the last write, in one transaction.
func (l *Ledger) Flush(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.Now().UnixNano()
	var dirty []*dstate
	for _, ds := range l.doms {
		ds.advance(nil, now)
		if ds.dirty {
			dirty = append(dirty, ds)
		}
	}
	if len(dirty) == 0 && len(l.slots) == 0 {
		return nil
	}
	err := l.st.Update(ctx, func(tx store.Tx) error {
		for _, ds := range dirty {
			if err := ds.write(tx); err != nil {
				return err
			}
		}
		return writeSlots(tx, l.slots)
	})
	if err != nil {
		return fmt.Errorf("writing usage: %w", err)
	}
	for _, ds := range dirty {
		l.mtd.add(ds.pending)
		ds.pending, ds.dirty = nil, false
	}
	clear(l.slots)
	return nil
}

// writeSlots adds the traffic of slots to the store's.
func writeSlots(tx store.Tx, slots map[slotKey]int64) error {
	for k, n := range slots {
		b, err := tx.Get(k.key())
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		old, _ := strconv.ParseInt(string(b), 10, 64)
		if err := tx.Put(k.key(), []byte(strconv.FormatInt(old+n, 10))); err != nil {
			return err
		}
	}
	return nil
}

// write puts ds's closed records and its open one (or, once it has
// ended, deletes it) in tx.
func (ds *dstate) write(tx store.Tx) error {
	for _, rec := range ds.pending {
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if err := tx.Put(recKey(rec), b); err != nil {
			return err
		}
	}
	if ds.o.Domain == "" {
		return nil
	}
	b, err := json.Marshal(ds.o)
	if err != nil {
		return err
	}
	return tx.Put(keyOpen+ds.o.Domain, b)
}

func recKey(r api.UsageRecord) string {
	return fmt.Sprintf("%s%s/%s/%019d", keyRec, monthOf(r.StartNs), r.Domain, r.StartNs)
}

func monthOf(ns int64) string { return time.Unix(0, ns).UTC().Format("2006-01") }

// Change is a change of one domain's record made in the caller's own
// store transaction: Write it there, then Done with the transaction's
// result. Between the two the ledger is locked (keep it short). A nil
// Change (nothing to record) is fine to use.
type Change struct {
	l    *Ledger
	name string
	next *dstate // nil: the domain's records end
	old  *dstate // the records that end (nil: none)
}

// Change records that name now holds alloc (read just now, r: nil if
// there is no reading): if that differs from its open record's, the
// record closes now (its reason says what changed) and the next opens. A domain with
// no record yet opens its first (from its seed, if it has one).
func (l *Ledger) Change(name string, alloc api.UsageAlloc, r *Raw) *Change {
	l.mu.Lock()
	now := l.Now().UnixNano()
	ds, ok := l.doms[name]
	if !ok {
		seed := l.seeds[name]
		next := &dstate{dirty: true, o: open{Domain: name, StartNs: now, AtNs: now, Alloc: alloc, Start: clone(seed), Meter: meter{Base: clone(seed)}}}
		if r != nil {
			next.o.Meter.observe(*r)
			next.o.Start = next.o.Meter.totals()
		}
		return &Change{l: l, name: name, next: next}
	}
	if equalAlloc(ds.o.Alloc, alloc) {
		l.mu.Unlock()
		return nil
	}
	next := ds.clone()
	next.advance(r, now)
	next.closeAt(now, next.o.Meter.totals(), changeReason(ds.o.Alloc, alloc))
	next.o.Alloc = alloc
	return &Change{l: l, name: name, next: next}
}

// Differs reports whether alloc is not what name's open record holds
// (a Change would close it), or name has none.
func (l *Ledger) Differs(name string, alloc api.UsageAlloc) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ds, ok := l.doms[name]
	return !ok || !equalAlloc(ds.o.Alloc, alloc)
}

// End closes name's last record: the domain is gone from this host
// (destroyed, saved, migrated away, undefined).
func (l *Ledger) End(name string, r *Raw, reason string) *Change {
	l.mu.Lock()
	ds, ok := l.doms[name]
	if !ok {
		l.mu.Unlock()
		return nil
	}
	now := l.Now().UnixNano()
	next := ds.clone()
	next.advance(r, now)
	next.closeAt(now, next.o.Meter.totals(), reason)
	return &Change{l: l, name: name, old: next}
}

// Discard drops name's open record without closing it: a domain whose
// create failed never existed, and nothing is billed for it (its record
// only ever said "being started", with no counters).
func (l *Ledger) Discard(name string) *Change {
	l.mu.Lock()
	ds, ok := l.doms[name]
	if !ok {
		l.mu.Unlock()
		return nil
	}
	old := ds.clone()
	old.pending = nil
	return &Change{l: l, name: name, old: old}
}

// Write puts the change in tx.
func (c *Change) Write(tx store.Tx) error {
	if c == nil {
		return nil
	}
	if c.old != nil {
		c.old.o.Domain = "" // ended: only its records are written
		if err := c.old.write(tx); err != nil {
			return err
		}
		if err := tx.Delete(keyOpen + c.name); err != nil {
			return err
		}
		if err := c.writeSaved(tx); err != nil {
			return err
		}
	}
	if c.next == nil {
		return nil
	}
	return c.next.write(tx)
}

// writeSaved keeps the last totals of a domain that ends by a save.
func (c *Change) writeSaved(tx store.Tx) error {
	n := len(c.old.pending)
	if n == 0 || c.old.pending[n-1].Reason != "saved" {
		return nil
	}
	last := c.old.pending[n-1]
	b, err := json.Marshal(last.Totals)
	if err != nil {
		return err
	}
	return tx.Put(keySaved+c.name, b)
}

// Done applies the change once its transaction committed (err nil) and
// unlocks the ledger; on an error the ledger stays as it was.
func (c *Change) Done(err error) {
	if c == nil {
		return
	}
	l := c.l
	defer l.mu.Unlock()
	if err != nil {
		return
	}
	if c.old != nil {
		l.mtd.add(c.old.pending)
		delete(l.doms, c.name)
		if n := len(c.old.pending); n > 0 && c.old.pending[n-1].Reason == "saved" {
			l.saved[c.name] = c.old.pending[n-1].Totals
		}
	}
	if c.next != nil {
		l.mtd.add(c.next.pending)
		c.next.pending, c.next.dirty = nil, false
		l.doms[c.next.o.Domain] = c.next
		delete(l.seeds, c.next.o.Domain)
	}
}

// Commit writes a change in a transaction of its own.
func (c *Change) Commit(ctx context.Context, st store.Store) error {
	if c == nil {
		return nil
	}
	err := st.Update(ctx, c.Write)
	c.Done(err)
	return err
}

// Rename moves from's open record to to: its records so far close under
// the old name ("renamed") and the next opens under the new one with the
// same totals. Write it in the rename's transaction.
func (l *Ledger) Rename(from, to string) *Change {
	l.mu.Lock()
	ds, ok := l.doms[from]
	if !ok {
		l.mu.Unlock()
		return nil
	}
	now := l.Now().UnixNano()
	old := ds.clone()
	old.advance(nil, now)
	old.closeAt(now, old.o.Meter.totals(), "renamed")
	return &Change{l: l, name: from, old: old, next: &dstate{o: open{Domain: to, StartNs: now, AtNs: old.o.AtNs,
		Alloc: old.o.Alloc, Start: old.o.Start, Meter: old.o.Meter}}}
}

// Reconcile ends the records of domains gone while no daemon ran (a
// destroy whose end the last daemon did not write): present says which
// domains still exist.
func (l *Ledger) Reconcile(ctx context.Context, present func(name string) bool) {
	for _, n := range l.Domains() {
		if !present(n) {
			l.End(n, nil, "gone").Commit(ctx, l.st)
		}
	}
}

func equalAlloc(a, b api.UsageAlloc) bool {
	return a.State == b.State && a.Tenant == b.Tenant && a.VCPUs == b.VCPUs && a.MaxMemMiB == b.MaxMemMiB &&
		a.MemMiB == b.MemMiB && slices.Equal(a.Disks, b.Disks) && slices.Equal(a.Vifs, b.Vifs)
}

func equalCounters(a, b api.UsageCounters) bool {
	fa, fb := fields(&a), fields(&b)
	for i := range fa {
		if *fa[i] != *fb[i] {
			return false
		}
	}
	return true
}

// changeReason says what changed between two allocations: "state:NEW",
// or the first of mem, vcpus, disks, vifs, tenant that differs.
func changeReason(a, b api.UsageAlloc) string {
	switch {
	case a.State != b.State:
		s := string(b.State)
		if s == "" {
			s = "starting"
		}
		return "state:" + s
	case a.MaxMemMiB != b.MaxMemMiB || a.MemMiB != b.MemMiB:
		return "mem"
	case a.VCPUs != b.VCPUs:
		return "vcpus"
	case !slices.Equal(a.Disks, b.Disks):
		return "disks"
	case !slices.Equal(a.Vifs, b.Vifs):
		return "vifs"
	}
	return "tenant"
}

// Current is a domain's running totals now (the metrics' counters).
type Current struct {
	Domain, Tenant string
	Totals         api.UsageCounters
	// MonthBytes is its transfer this month (what a quota counts).
	MonthBytes int64
}

// Currents are every tracked domain's, by name.
func (l *Ledger) Currents() []Current {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Current, 0, len(l.doms))
	for name, ds := range l.doms {
		out = append(out, Current{Domain: name, Tenant: ds.o.Alloc.Tenant, Totals: ds.o.Meter.totals(), MonthBytes: l.transfer(name, false)})
	}
	slices.SortFunc(out, func(a, b Current) int { return strings.Compare(a.Domain, b.Domain) })
	return out
}
