package usage

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// Filter picks records: those overlapping [FromNs, ToNs) (clipped to it:
// time exactly, counters pro rata), of one tenant or domain, summed By
// "hour", "day" or "month" ("" = each record), from after Cursor, at
// most Limit rows (0 = all).
type Filter struct {
	FromNs, ToNs int64
	Tenant       *string // nil: any; "" = the host's own
	Domain       string
	By           string
	Cursor       string
	Limit        int
}

// Periods are the values of Filter.By.
var Periods = []string{"hour", "day", "month"}

// Records are the records overlapping f's range of f's domain and tenant,
// the open ones (up to now, with the latest reading) included, by start.
func (l *Ledger) Records(ctx context.Context, f Filter) ([]api.UsageRecord, error) {
	var out []api.UsageRecord
	keep := func(r api.UsageRecord) bool {
		return r.EndNs > f.FromNs && r.StartNs < f.ToNs && (f.Domain == "" || r.Domain == f.Domain) &&
			(f.Tenant == nil || r.Alloc.Tenant == *f.Tenant)
	}
	for _, mo := range months(f.FromNs, f.ToNs) {
		prefix := keyRec + mo + "/"
		if f.Domain != "" {
			prefix += f.Domain + "/"
		}
		kvs, err := l.st.List(ctx, prefix)
		if err != nil {
			return nil, fmt.Errorf("reading usage records: %w", err)
		}
		for _, kv := range kvs {
			var r api.UsageRecord
			if err := json.Unmarshal(kv.Value, &r); err != nil {
				return nil, fmt.Errorf("usage record %s: %w", kv.Key, err)
			}
			if keep(r) {
				out = append(out, r)
			}
		}
	}
	l.mu.Lock()
	now := l.Now().UnixNano()
	for _, ds := range l.doms {
		for _, r := range ds.pending {
			if keep(r) {
				out = append(out, r)
			}
		}
		t := ds.o.Meter.totals()
		r := api.UsageRecord{Domain: ds.o.Domain, StartNs: ds.o.StartNs, EndNs: now, Open: true, Alloc: ds.o.Alloc,
			Delta: Sub(t, ds.o.Start), Totals: t}
		if r.EndNs > r.StartNs && keep(r) {
			out = append(out, r)
		}
	}
	l.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].StartNs != out[j].StartNs {
			return out[i].StartNs < out[j].StartNs
		}
		return out[i].Domain < out[j].Domain
	})
	return out, nil
}

// months are the months [from, to) touches, "2006-01".
func months(from, to int64) []string {
	var out []string
	t := time.Unix(0, from).UTC()
	t = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	for ; t.UnixNano() < to; t = t.AddDate(0, 1, 0) {
		out = append(out, t.Format("2006-01"))
	}
	return out
}

// periodOf is the period of by that ns falls in.
func periodOf(ns int64, by string) (start, end int64) {
	t := time.Unix(0, ns).UTC()
	switch by {
	case "hour":
		s := t.Truncate(time.Hour)
		return s.UnixNano(), s.Add(time.Hour).UnixNano()
	case "day":
		s := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		return s.UnixNano(), s.AddDate(0, 0, 1).UnixNano()
	}
	s := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	return s.UnixNano(), s.AddDate(0, 1, 0).UnixNano()
}

// Clip is r within [from, to): its time exactly, its deltas pro rata,
// its totals those at the new end.
func Clip(r api.UsageRecord, from, to int64) api.UsageRecord {
	if r.StartNs >= from && r.EndNs <= to {
		return r
	}
	s, e := max(r.StartNs, from), min(r.EndNs, to)
	d := r.EndNs - r.StartNs
	toE := lerp(api.UsageCounters{}, r.Delta, e-r.StartNs, d)
	r.Totals = Sub(r.Totals, Sub(r.Delta, toE))
	r.Delta = Sub(toE, lerp(api.UsageCounters{}, r.Delta, s-r.StartNs, d))
	r.StartNs, r.EndNs = s, e
	return r
}

// held reports whether the domain's vCPUs and RAM were held in a state.
func held(s api.State) bool { return s == api.StateRunning || s == api.StatePaused }

// Rows are f's records as rows: each record, or their sums per domain and
// period, then paged from f.Cursor (the next cursor is returned).
func (l *Ledger) Rows(ctx context.Context, f Filter) ([]api.UsageRow, string, error) {
	recs, err := l.Records(ctx, f)
	if err != nil {
		return nil, "", err
	}
	var rows []api.UsageRow
	idx := map[string]int{}
	for _, r := range recs {
		r = Clip(r, f.FromNs, f.ToNs)
		row := api.UsageRow{Domain: r.Domain, Tenant: r.Alloc.Tenant, StartNs: r.StartNs, EndNs: r.EndNs}
		if f.By == "" {
			a, tot := r.Alloc, r.Totals
			row.Alloc, row.Reason, row.Totals = &a, r.Reason, &tot
			if r.Open {
				row.Reason = "open"
			}
		} else {
			row.StartNs, row.EndNs = periodOf(r.StartNs, f.By)
		}
		k := fmt.Sprintf("%d/%s/%s", row.StartNs, r.Domain, r.Alloc.Tenant)
		i, ok := idx[k]
		if f.By == "" || !ok {
			rows = append(rows, row)
			i = len(rows) - 1
			idx[k] = i
		}
		accumulate(&rows[i], r)
	}
	sort.SliceStable(rows, func(i, j int) bool { return rowKey(rows[i]) < rowKey(rows[j]) })
	return page(rows, f.Cursor, f.Limit)
}

func accumulate(row *api.UsageRow, r api.UsageRecord) {
	ns := r.EndNs - r.StartNs
	row.Ns += ns
	row.Records++
	if held(r.Alloc.State) {
		row.RunNs += ns
		row.VCPUNs += float64(r.Alloc.VCPUs) * float64(ns)
		row.MemMiBNs += float64(r.Alloc.MaxMemMiB) * float64(ns)
	}
	for _, d := range r.Alloc.Disks {
		row.DiskByteNs += float64(d.Bytes) * float64(ns)
	}
	row.Delta = Add(row.Delta, r.Delta)
}

// rowKey orders rows (start, domain, tenant) and is their cursor.
func rowKey(r api.UsageRow) string {
	return fmt.Sprintf("%019d/%s/%s", r.StartNs, r.Domain, r.Tenant)
}

func page(rows []api.UsageRow, cursor string, limit int) ([]api.UsageRow, string, error) {
	start := 0
	if cursor != "" {
		if _, err := strconv.ParseInt(strings.SplitN(cursor, "/", 2)[0], 10, 64); err != nil {
			return nil, "", api.Errorf(api.ErrInvalid, "cursor %q: not one this API gave; use the next cursor of the previous page", cursor)
		}
		start = sort.Search(len(rows), func(i int) bool { return rowKey(rows[i]) > cursor })
	}
	rows = rows[start:]
	if limit <= 0 || len(rows) <= limit {
		return rows, "", nil
	}
	return rows[:limit], rowKey(rows[limit-1]), nil
}
