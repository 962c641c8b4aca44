package usage

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// Prices rate a month of usage (the price file, `key = value` lines:
// `vcpu_hour = 0.012`, `currency = "EUR"`). A price left out is 0 and its
// line is not shown.
type Prices struct {
	Currency     string
	VCPUHour     float64 // per vCPU-hour held (running or paused)
	RAMGiBHour   float64 // per GiB-hour of maxmem held
	DiskGiBMonth float64 // per GiB-month of disk (while the domain exists)
	TransferGB   float64 // per GB (10^9 bytes) received + sent
	P95Mbit      float64 // per Mbit/s of the 95th percentile of 5-minute traffic
}

// PriceKeys are the price file's keys and what each means.
var PriceKeys = map[string]string{
	"currency":       "the currency's name, shown with the invoice",
	"vcpu_hour":      "price of one vCPU held for an hour",
	"ram_gib_hour":   "price of one GiB of RAM (maxmem) held for an hour",
	"disk_gib_month": "price of one GiB of disk for a month",
	"transfer_gb":    "price of one GB (10^9 bytes) transferred, in and out",
	"p95_mbit":       "price of one Mbit/s of the 95th percentile of 5-minute traffic",
}

// Set sets one key of the price file.
func (p *Prices) Set(key, value string) error {
	if key == "currency" {
		p.Currency = value
		return nil
	}
	dst := map[string]*float64{"vcpu_hour": &p.VCPUHour, "ram_gib_hour": &p.RAMGiBHour, "disk_gib_month": &p.DiskGiBMonth,
		"transfer_gb": &p.TransferGB, "p95_mbit": &p.P95Mbit}[key]
	if dst == nil {
		return fmt.Errorf("unknown price %q", key)
	}
	v, err := strconv.ParseFloat(value, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return fmt.Errorf("%s = %s: a price is a number >= 0 (e.g. 0.012)", key, value)
	}
	*dst = v
	return nil
}

// ParseMonth reads "2026-12" into its bounds in Unix ns (UTC).
func ParseMonth(s string) (from, to int64, err error) {
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return 0, 0, api.Errorf(api.ErrInvalid, "month %q: write it as YYYY-MM, e.g. 2026-12", s)
	}
	return t.UnixNano(), t.AddDate(0, 1, 0).UnixNano(), nil
}

const (
	nsHour = 3600e9
	gib    = 1 << 30
)

// Invoice rates a month (ParseMonth) for every tenant, or one.
func (l *Ledger) Invoice(ctx context.Context, month string, tenant *string, p Prices) (api.Invoice, error) {
	from, to, err := ParseMonth(month)
	if err != nil {
		return api.Invoice{}, err
	}
	rows, _, err := l.Rows(ctx, Filter{FromNs: from, ToNs: to, Tenant: tenant, By: "month"})
	if err != nil {
		return api.Invoice{}, err
	}
	type sums struct{ vcpuNs, memNs, diskNs, bytes float64 }
	per := map[string]*sums{}
	for _, r := range rows {
		s := per[r.Tenant]
		if s == nil {
			s = &sums{}
			per[r.Tenant] = s
		}
		s.vcpuNs += r.VCPUNs
		s.memNs += r.MemMiBNs
		s.diskNs += r.DiskByteNs
		s.bytes += float64(r.Delta.NetRxBytes + r.Delta.NetTxBytes)
	}
	p95, err := l.P95(ctx, month, tenant)
	if err != nil {
		return api.Invoice{}, err
	}
	for t := range p95 {
		if per[t] == nil {
			per[t] = &sums{}
		}
	}
	inv := api.Invoice{Month: month, Currency: p.Currency, Totals: map[string]float64{}}
	names := make([]string, 0, len(per))
	for t := range per {
		names = append(names, t)
	}
	sort.Strings(names)
	monthNs := float64(to - from)
	for _, t := range names {
		s := per[t]
		lines := []api.InvoiceLine{
			{Item: "vcpu-hours", Quantity: s.vcpuNs / nsHour, Unit: p.VCPUHour},
			{Item: "ram-gib-hours", Quantity: s.memNs / 1024 / nsHour, Unit: p.RAMGiBHour},
			{Item: "disk-gib-months", Quantity: s.diskNs / gib / monthNs, Unit: p.DiskGiBMonth},
			{Item: "transfer-gb", Quantity: s.bytes / 1e9, Unit: p.TransferGB},
			{Item: "p95-mbit", Quantity: p95[t], Unit: p.P95Mbit},
		}
		for _, ln := range lines {
			if ln.Unit == 0 {
				continue
			}
			ln.Tenant = t
			ln.Amount = math.Round(ln.Quantity*ln.Unit*100) / 100
			inv.Lines = append(inv.Lines, ln)
			inv.Totals[t] += ln.Amount
		}
	}
	return inv, nil
}

// keyP95/MONTH/TENANT/SLOT holds the bytes a tenant's domains moved in
// one 5-minute slot of the month (the 95th percentile's samples).
const (
	keyP95 = "usage/p95/"
	slotNs = int64(5 * time.Minute)
)

type slotKey struct {
	tenant string
	slot   int64 // Unix ns / slotNs
}

func (k slotKey) key() string {
	return fmt.Sprintf("%s%s/%s/%012d", keyP95, monthOf(k.slot*slotNs), k.tenant, k.slot)
}

// P95 is each tenant's (or one's) 95th percentile of 5-minute traffic in
// a month, in Mbit/s: the month's slots so far sorted, the top 5% left out.
func (l *Ledger) P95(ctx context.Context, month string, tenant *string) (map[string]float64, error) {
	from, to, err := ParseMonth(month)
	if err != nil {
		return nil, err
	}
	kvs, err := l.st.List(ctx, keyP95+month+"/")
	if err != nil {
		return nil, fmt.Errorf("reading traffic slots: %w", err)
	}
	per := map[string][]int64{}
	for _, kv := range kvs {
		rest := kv.Key[len(keyP95+month+"/"):]
		i := len(rest) - 13
		if i < 0 {
			continue
		}
		t := rest[:i]
		if tenant != nil && t != *tenant {
			continue
		}
		n, _ := strconv.ParseInt(string(kv.Value), 10, 64)
		per[t] = append(per[t], n)
	}
	end := min(to, l.Now().UnixNano())
	slots := int((end - from + slotNs - 1) / slotNs)
	out := map[string]float64{}
	for t, v := range per {
		for len(v) < slots {
			v = append(v, 0) // a slot with no traffic
		}
		sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
		i := int(math.Ceil(0.95*float64(len(v)))) - 1
		out[t] = float64(v[max(i, 0)]) * 8 / (float64(slotNs) / 1e9) / 1e6
	}
	return out, nil
}

// ParsePrices reads a price file: one `key = value` a line (the value
// quoted or not: `vcpu_hour = 0.012`, `currency = "EUR"`), # comments,
// blank lines; each key once. Errors say file:line and the fix.
func ParsePrices(name string, src []byte) (Prices, error) {
	var p Prices
	seen := map[string]int{}
	for i, line := range strings.Split(string(src), "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"'`)
		if !ok || k == "" {
			return p, fmt.Errorf("%s:%d: write key = value (e.g. vcpu_hour = 0.012)", name, i+1)
		}
		if at, dup := seen[k]; dup {
			return p, fmt.Errorf("%s:%d: %s is set twice (first at line %d)", name, i+1, k, at)
		}
		seen[k] = i + 1
		if err := p.Set(k, v); err != nil {
			return p, fmt.Errorf("%s:%d: %v; the keys are %s", name, i+1, err, strings.Join(priceKeyNames(), ", "))
		}
	}
	return p, nil
}

func priceKeyNames() []string {
	keys := make([]string, 0, len(PriceKeys))
	for k := range PriceKeys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
