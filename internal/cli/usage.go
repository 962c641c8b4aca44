package cli

import (
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
)

// runUsage is `ringfence usage`: the usage ledger's records, or their sums
// per hour, day or month; `usage invoice` rates a month.
func runUsage(e *env, args []string) error {
	if len(args) > 0 && args[0] == "invoice" {
		return runInvoice(e, args[1:])
	}
	fs := flag.NewFlagSet("usage", flag.ContinueOnError)
	from := fs.String("from", "", "from this time: RFC 3339, a date (2026-12-01), a month (2026-12) or a duration ago (24h); default the start of this month")
	to := fs.String("to", "", "before this time (same forms); default now")
	tenant := fs.String("tenant", "", "only this tenant's domains (\"\" = the host's own)")
	domain := fs.String("domain", "", "only this domain")
	by := fs.String("by", "", "sum per domain by hour, day or month (default: each record)")
	asJSON := fs.Bool("json", false, "print JSON")
	asCSV := fs.Bool("csv", false, "print CSV (every figure)")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	q := client.UsageQuery{Domain: *domain, By: *by}
	now := time.Now()
	for _, t := range []struct {
		name, val string
		dst       *string
	}{{"--from", *from, &q.From}, {"--to", *to, &q.To}} {
		if t.val == "" {
			continue
		}
		tm, err := usageTime(t.name, t.val, now)
		if err != nil {
			return err
		}
		*t.dst = tm.UTC().Format(time.RFC3339Nano)
	}
	q.Tenant = ifGiven(fs, "tenant", tenant)
	rows, err := e.client().Usage(ctx(), q)
	if err != nil {
		return err
	}
	switch {
	case *asJSON:
		return printJSON(e.stdout, rows)
	case *asCSV:
		return usageCSV(e.stdout, rows)
	}
	renderUsage(e.stdout, rows)
	return nil
}

// ifGiven is v when the flag was given (even empty: --tenant "" is the
// host's own domains), else nil.
func ifGiven(fs *flag.FlagSet, name string, v *string) *string {
	var out *string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			out = v
		}
	})
	return out
}

// usageTime reads a time as RFC 3339, a date, a month, or a duration ago.
func usageTime(flagName, s string, now time.Time) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02", "2006-01"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usageError{fmt.Sprintf("%s %q: want a time (RFC 3339), a date (2026-12-01), a month (2026-12) or a duration ago (24h)", flagName, s)}
}

const nsPerHour = 3600e9

// renderUsage prints a row a line in 80 columns; --csv and --json have
// every figure.
func renderUsage(w io.Writer, rows []api.UsageRow) {
	fmt.Fprintf(w, "%-16s %-12s %-8s %6s %7s %7s %8s %8s\n", "START (UTC)", "DOMAIN", "TENANT", "HOURS", "VCPU-H", "GIB-H", "CPU-S", "NET-MB")
	for _, r := range rows {
		start := time.Unix(0, r.StartNs).UTC().Format("2006-01-02 15:04")
		net := float64(r.Delta.NetRxBytes+r.Delta.NetTxBytes) / 1e6
		fmt.Fprintf(w, "%-16s %-12s %-8s %6.2f %7.2f %7.2f %8.1f %8.1f\n", start, cut(r.Domain, 12), cut(tenantColumn(r.Tenant), 8),
			float64(r.Ns)/nsPerHour, r.VCPUNs/nsPerHour, r.MemMiBNs/1024/nsPerHour, float64(r.Delta.CPUNs)/1e9, net)
	}
}

// usageCSV writes every figure of every row.
func usageCSV(w io.Writer, rows []api.UsageRow) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"start", "end", "domain", "tenant", "state", "reason", "ns", "run_ns", "vcpu_ns", "mem_mib_ns", "disk_byte_ns",
		"cpu_ns", "steal_ns", "disk_rd_bytes", "disk_wr_bytes", "disk_rd_ops", "disk_wr_ops",
		"net_rx_bytes", "net_tx_bytes", "net_rx_packets", "net_tx_packets", "records"})
	i := func(n int64) string { return strconv.FormatInt(n, 10) }
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', 0, 64) }
	for _, r := range rows {
		state := ""
		if r.Alloc != nil {
			state = string(r.Alloc.State)
		}
		d := r.Delta
		cw.Write([]string{time.Unix(0, r.StartNs).UTC().Format(time.RFC3339Nano), time.Unix(0, r.EndNs).UTC().Format(time.RFC3339Nano),
			r.Domain, r.Tenant, state, r.Reason, i(r.Ns), i(r.RunNs), f(r.VCPUNs), f(r.MemMiBNs), f(r.DiskByteNs),
			i(d.CPUNs), i(d.StealNs), i(d.DiskRdBytes), i(d.DiskWrBytes), i(d.DiskRdOps), i(d.DiskWrOps),
			i(d.NetRxBytes), i(d.NetTxBytes), i(d.NetRxPackets), i(d.NetTxPackets), strconv.Itoa(r.Records)})
	}
	cw.Flush()
	return cw.Error()
}

// runInvoice is `ringfence usage invoice --month M`: a month rated with
// the daemon's price file, lines per tenant.
func runInvoice(e *env, args []string) error {
	fs := flag.NewFlagSet("usage invoice", flag.ContinueOnError)
	month := fs.String("month", "", "the month, YYYY-MM (default: this month so far)")
	tenant := fs.String("tenant", "", "only this tenant (\"\" = the host's own domains)")
	asJSON := fs.Bool("json", false, "print JSON")
	asCSV := fs.Bool("csv", false, "print CSV")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *month == "" {
		*month = time.Now().UTC().Format("2006-01")
	}
	inv, err := e.client().Invoice(ctx(), *month, ifGiven(fs, "tenant", tenant))
	if err != nil {
		return err
	}
	switch {
	case *asJSON:
		return printJSON(e.stdout, inv)
	case *asCSV:
		cw := csv.NewWriter(e.stdout)
		cw.Write([]string{"month", "tenant", "item", "quantity", "unit_price", "amount", "currency"})
		for _, l := range inv.Lines {
			cw.Write([]string{inv.Month, l.Tenant, l.Item, strconv.FormatFloat(l.Quantity, 'f', 6, 64),
				strconv.FormatFloat(l.Unit, 'f', -1, 64), strconv.FormatFloat(l.Amount, 'f', 2, 64), inv.Currency})
		}
		cw.Flush()
		return cw.Error()
	}
	fmt.Fprintf(e.stdout, "%-7s %-14s %-16s %14s %10s %12s\n", "MONTH", "TENANT", "ITEM", "QUANTITY", "PRICE", "AMOUNT")
	for _, l := range inv.Lines {
		fmt.Fprintf(e.stdout, "%-7s %-14s %-16s %14.3f %10.4g %12.2f\n", inv.Month, cut(tenantColumn(l.Tenant), 14), l.Item, l.Quantity, l.Unit, l.Amount)
	}
	for _, t := range sortedKeys(inv.Totals) {
		fmt.Fprintf(e.stdout, "%-7s %-14s %-16s %14s %10s %12.2f %s\n", inv.Month, cut(tenantColumn(t), 14), "total", "", "", inv.Totals[t], inv.Currency)
	}
	return nil
}

func sortedKeys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
