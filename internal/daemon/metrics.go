package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/audit"
	"github.com/ringfence/ringfence/internal/usage"
)

// metricDesc is one metric: its description and how a sample reads it.
type metricDesc struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	val  func(d api.DomainStats) float64
}

func domainMetric(name, help string, kind prometheus.ValueType, val func(api.DomainStats) float64) metricDesc {
	return metricDesc{prometheus.NewDesc("ringfence_domain_"+name, help, []string{"domain"}, nil), kind, val}
}

const kib = 1024

// domainMetrics are the per-domain figures: the same sample `top` shows
// (GET /1.0/stats, the daemon's sampler), so the two agree.
var domainMetrics = []metricDesc{
	domainMetric("cpu_seconds_total", "CPU time the domain's QEMU used.", prometheus.CounterValue, func(d api.DomainStats) float64 { return d.CPUSec }),
	domainMetric("vcpu_run_seconds_total", "Time the vCPU threads ran on a host CPU.", prometheus.CounterValue, func(d api.DomainStats) float64 { return float64(d.RunNs) / 1e9 }),
	domainMetric("steal_seconds_total", "Time the vCPU threads were runnable but waited for a host CPU (the guest's steal).", prometheus.CounterValue, func(d api.DomainStats) float64 { return float64(d.WaitNs) / 1e9 }),
	domainMetric("memory_bytes", "The domain's current memory (the balloon's size when it answers).", prometheus.GaugeValue, func(d api.DomainStats) float64 { return float64(d.MemKiB * kib) }),
	domainMetric("memory_max_bytes", "The domain's maximum memory.", prometheus.GaugeValue, func(d api.DomainStats) float64 { return float64(d.MaxMemKiB * kib) }),
	domainMetric("balloon_bytes", "The balloon's actual size as QEMU reports it (0: no answer).", prometheus.GaugeValue, func(d api.DomainStats) float64 { return float64(d.BalloonKiB * kib) }),
	domainMetric("vcpus", "The domain's vCPUs.", prometheus.GaugeValue, func(d api.DomainStats) float64 { return float64(d.VCPUs) }),
	domainMetric("disk_read_bytes_total", "Bytes read from the domain's disks.", prometheus.CounterValue, func(d api.DomainStats) float64 { return float64(d.VBDRdBytes) }),
	domainMetric("disk_write_bytes_total", "Bytes written to the domain's disks.", prometheus.CounterValue, func(d api.DomainStats) float64 { return float64(d.VBDWrBytes) }),
	domainMetric("disk_read_ops_total", "Read operations on the domain's disks.", prometheus.CounterValue, func(d api.DomainStats) float64 { return float64(d.VBDRd) }),
	domainMetric("disk_write_ops_total", "Write operations on the domain's disks.", prometheus.CounterValue, func(d api.DomainStats) float64 { return float64(d.VBDWr) }),
	domainMetric("net_rx_bytes_total", "Bytes the domain's vifs received (as the guest sees them).", prometheus.CounterValue, func(d api.DomainStats) float64 { return float64(d.NetRxBytes) }),
	domainMetric("net_tx_bytes_total", "Bytes the domain's vifs sent (as the guest sees them).", prometheus.CounterValue, func(d api.DomainStats) float64 { return float64(d.NetTxBytes) }),
}

// deviceMetric is one per-device counter: a disk's (labels domain, disk:
// its name in the domain file, e.g. xvda) or a vif's (domain, vif: its
// index, tap).
type deviceMetric[T any] struct {
	desc *prometheus.Desc
	val  func(T) float64
}

func diskMetric(name, help string, val func(api.DiskStats) float64) deviceMetric[api.DiskStats] {
	return deviceMetric[api.DiskStats]{prometheus.NewDesc("ringfence_disk_"+name, help, []string{"domain", "disk"}, nil), val}
}

func vifMetric(name, help string, val func(api.VifStats) float64) deviceMetric[api.VifStats] {
	return deviceMetric[api.VifStats]{prometheus.NewDesc("ringfence_vif_"+name, help, []string{"domain", "vif", "tap"}, nil), val}
}

// diskMetrics and vifMetrics split the domain's disk and net figures by
// device (the domain's are their sums).
var (
	diskMetrics = []deviceMetric[api.DiskStats]{
		diskMetric("read_bytes_total", "Bytes read from one disk.", func(d api.DiskStats) float64 { return float64(d.RdBytes) }),
		diskMetric("write_bytes_total", "Bytes written to one disk.", func(d api.DiskStats) float64 { return float64(d.WrBytes) }),
		diskMetric("read_ops_total", "Read operations on one disk.", func(d api.DiskStats) float64 { return float64(d.RdOps) }),
		diskMetric("write_ops_total", "Write operations on one disk.", func(d api.DiskStats) float64 { return float64(d.WrOps) }),
	}
	vifMetrics = []deviceMetric[api.VifStats]{
		vifMetric("rx_bytes_total", "Bytes one vif received (as the guest sees it).", func(v api.VifStats) float64 { return float64(v.RxBytes) }),
		vifMetric("tx_bytes_total", "Bytes one vif sent (as the guest sees it).", func(v api.VifStats) float64 { return float64(v.TxBytes) }),
		vifMetric("rx_packets_total", "Packets one vif received.", func(v api.VifStats) float64 { return float64(v.RxPackets) }),
		vifMetric("tx_packets_total", "Packets one vif sent.", func(v api.VifStats) float64 { return float64(v.TxPackets) }),
	}
)

// usageMetric is one of the usage ledger's figures per domain: its
// running totals, continuous across restarts, save/restore and
// migration (unlike ringfence_domain_*, which start again with each
// QEMU), labelled with the tenant billed.
type usageMetric struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	val  func(usage.Current) float64
}

func newUsageMetric(name, help string, kind prometheus.ValueType, val func(usage.Current) float64) usageMetric {
	return usageMetric{prometheus.NewDesc("ringfence_usage_"+name, help, []string{"domain", "tenant"}, nil), kind, val}
}

var usageMetrics = []usageMetric{
	newUsageMetric("cpu_seconds_total", "CPU time the domain's cgroup used, as billed.", prometheus.CounterValue, func(c usage.Current) float64 { return float64(c.Totals.CPUNs) / 1e9 }),
	newUsageMetric("steal_seconds_total", "Time its vCPUs waited for a host CPU.", prometheus.CounterValue, func(c usage.Current) float64 { return float64(c.Totals.StealNs) / 1e9 }),
	newUsageMetric("disk_read_bytes_total", "Bytes read from its disks.", prometheus.CounterValue, func(c usage.Current) float64 { return float64(c.Totals.DiskRdBytes) }),
	newUsageMetric("disk_write_bytes_total", "Bytes written to its disks.", prometheus.CounterValue, func(c usage.Current) float64 { return float64(c.Totals.DiskWrBytes) }),
	newUsageMetric("disk_read_ops_total", "Read operations on its disks.", prometheus.CounterValue, func(c usage.Current) float64 { return float64(c.Totals.DiskRdOps) }),
	newUsageMetric("disk_write_ops_total", "Write operations on its disks.", prometheus.CounterValue, func(c usage.Current) float64 { return float64(c.Totals.DiskWrOps) }),
	newUsageMetric("net_rx_bytes_total", "Bytes its vifs received.", prometheus.CounterValue, func(c usage.Current) float64 { return float64(c.Totals.NetRxBytes) }),
	newUsageMetric("net_tx_bytes_total", "Bytes its vifs sent.", prometheus.CounterValue, func(c usage.Current) float64 { return float64(c.Totals.NetTxBytes) }),
	newUsageMetric("net_rx_packets_total", "Packets its vifs received.", prometheus.CounterValue, func(c usage.Current) float64 { return float64(c.Totals.NetRxPackets) }),
	newUsageMetric("net_tx_packets_total", "Packets its vifs sent.", prometheus.CounterValue, func(c usage.Current) float64 { return float64(c.Totals.NetTxPackets) }),
	newUsageMetric("transfer_month_bytes", "Bytes its vifs moved this month (what a transfer quota counts).", prometheus.GaugeValue, func(c usage.Current) float64 { return float64(c.MonthBytes) }),
}

// The ledger: what is admitted, what is left.
var (
	ledgerTotal     = prometheus.NewDesc("ringfence_ledger_total_bytes", "Host memory the ledger books.", nil, nil)
	ledgerReserved  = prometheus.NewDesc("ringfence_ledger_reserved_bytes", "Host memory kept from domains.", nil, nil)
	ledgerCommitted = prometheus.NewDesc("ringfence_ledger_committed_bytes", "Memory admitted to domains (guest RAM and QEMU overhead).", nil, nil)
	ledgerFree      = prometheus.NewDesc("ringfence_ledger_free_bytes", "Memory left to admit.", nil, nil)
	ledgerVCPUs     = prometheus.NewDesc("ringfence_ledger_vcpus", "vCPUs admitted to domains.", nil, nil)
	ledgerVCPUsFree = prometheus.NewDesc("ringfence_ledger_vcpus_free", "vCPUs left to admit.", nil, nil)
	ledgerDomain    = prometheus.NewDesc("ringfence_ledger_domain_bytes", "Memory admitted to one domain (guest RAM and QEMU overhead).", []string{"domain"}, nil)
	domainsRunning  = prometheus.NewDesc("ringfence_domains", "Domains the daemon has (running or kept).", nil, nil)
)

// collector reads the daemon's latest sample and the ledger at scrape
// time: nothing is kept twice.
type collector struct {
	stats  func() api.Stats
	ledger func() api.Ledger
	usage  func() []usage.Current // nil: no usage ledger
}

// Describe names every metric, whether or not a domain runs now (the
// registry drops what was not described).
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range domainMetrics {
		ch <- m.desc
	}
	for _, m := range diskMetrics {
		ch <- m.desc
	}
	for _, m := range vifMetrics {
		ch <- m.desc
	}
	for _, m := range usageMetrics {
		ch <- m.desc
	}
	for _, d := range []*prometheus.Desc{ledgerTotal, ledgerReserved, ledgerCommitted, ledgerFree, ledgerVCPUs, ledgerVCPUsFree, ledgerDomain, domainsRunning} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	ch <- prometheus.MustNewConstMetric(domainsRunning, prometheus.GaugeValue, float64(len(st.Domains)))
	for _, d := range st.Domains {
		for _, m := range domainMetrics {
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.val(d), d.Name)
		}
		for _, dk := range d.Disks {
			for _, m := range diskMetrics {
				ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, m.val(dk), d.Name, dk.VDev)
			}
		}
		for _, v := range d.Vifs {
			for _, m := range vifMetrics {
				ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, m.val(v), d.Name, strconv.Itoa(v.Index), v.Tap)
			}
		}
	}
	if c.usage != nil {
		for _, u := range c.usage() {
			for _, m := range usageMetrics {
				ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.val(u), u.Domain, u.Tenant)
			}
		}
	}
	l := c.ledger()
	mib := func(n int) float64 { return float64(n) * (1 << 20) }
	committed, vcpus := 0, 0
	for _, e := range l.Entries {
		committed += e.MemoryMiB + e.OverheadMiB
		vcpus += e.VCPUs
		ch <- prometheus.MustNewConstMetric(ledgerDomain, prometheus.GaugeValue, mib(e.MemoryMiB+e.OverheadMiB), e.Domain)
	}
	ch <- prometheus.MustNewConstMetric(ledgerTotal, prometheus.GaugeValue, mib(l.TotalMiB))
	ch <- prometheus.MustNewConstMetric(ledgerReserved, prometheus.GaugeValue, mib(l.ReservedMiB))
	ch <- prometheus.MustNewConstMetric(ledgerCommitted, prometheus.GaugeValue, mib(committed))
	ch <- prometheus.MustNewConstMetric(ledgerFree, prometheus.GaugeValue, mib(l.FreeMiB))
	ch <- prometheus.MustNewConstMetric(ledgerVCPUs, prometheus.GaugeValue, float64(vcpus))
	ch <- prometheus.MustNewConstMetric(ledgerVCPUsFree, prometheus.GaugeValue, float64(l.VCPUsFree))
}

// metricsHandler serves the Prometheus text format from a registry of
// its own (no Go runtime or process metrics: the host's, not the
// guests').
func metricsHandler(c collector) http.Handler {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// openAudit opens the audit log in the store and makes the metrics
// handler.
func (b *startup) openAudit() error {
	l, err := audit.Open(context.Background(), b.st, 0)
	if err != nil {
		return fmt.Errorf("opening the audit log: %w", err)
	}
	b.s.audit = l
	b.s.metrics = metricsHandler(collector{b.mgr.Stats, b.ledger.Snapshot, b.s.usage.Currents})
	return nil
}

// listenMetrics serves /metrics alone, to anyone who reaches addr (a
// scraper has no token): plain HTTP, nothing else on it.
func (b *startup) listenMetrics() error {
	if b.cfg.MetricsListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", b.cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("metrics listener %s: %w", b.cfg.MetricsListen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", b.s.metrics)
	srv := b.s.server(mux, func(ctx context.Context, _ net.Conn) context.Context { return ctx })
	go srv.Serve(newGuardedListener(ln, "metrics", maxConns, maxConnsPerSource, b.log))
	b.later(func() { srv.Close() })
	b.log.Info("metrics listener (no token: keep it on loopback or a management network)", "addr", ln.Addr().String())
	return nil
}
