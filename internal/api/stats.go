package api

import "time"

// DomainStats are one domain's figures for `top` (xentop's columns).
// Counters are cumulative; Pct fields are rates over the daemon's last
// sampling interval (1 s).
type DomainStats struct {
	Name      string  `json:"name"`
	ID        int     `json:"id"`
	Flags     string  `json:"state"`
	CPUSec    float64 `json:"cpu_sec"`
	CPUPct    float64 `json:"cpu_pct"`
	MemKiB    int64   `json:"mem_kib"`
	MemPct    float64 `json:"mem_pct"`
	MaxMemKiB int64   `json:"maxmem_kib"`
	VCPUs     int     `json:"vcpus"`
	// StealPct is the share of time the vCPU threads were runnable but
	// waiting for a host CPU, averaged over vCPUs: what the guest sees as st.
	StealPct float64 `json:"steal_pct"`
	WaitNs   int64   `json:"vcpu_wait_ns"` // cumulative runnable-but-waiting time
	RunNs    int64   `json:"vcpu_run_ns"`
	Nets     int     `json:"nets"`
	NetTxKiB int64   `json:"net_tx_kib"`
	NetRxKiB int64   `json:"net_rx_kib"`
	VBDs     int     `json:"vbds"`
	VBDRd    int64   `json:"vbd_rd"`
	VBDWr    int64   `json:"vbd_wr"`
	PID      int     `json:"pid"`
	// Byte counters (the KiB and op figures above are top's columns):
	// the disks' bytes read and written, the vifs' bytes as the guest
	// sees them, and the balloon's actual size (0: no answer).
	VBDRdBytes int64  `json:"vbd_rd_bytes"`
	VBDWrBytes int64  `json:"vbd_wr_bytes"`
	NetTxBytes int64  `json:"net_tx_bytes"`
	NetRxBytes int64  `json:"net_rx_bytes"`
	BalloonKiB int64  `json:"balloon_kib,omitempty"`
	Tenant     string `json:"tenant,omitempty"` // the domain's owner
	// Disks and Vifs are the same counters per device (their sums are
	// the figures above).
	Disks []DiskStats `json:"disks,omitempty"`
	Vifs  []VifStats  `json:"vifs,omitempty"`
}

// DiskStats are one disk's cumulative counters.
type DiskStats struct {
	VDev    string `json:"vdev"`  // its name in the domain file (xvda)
	Guest   string `json:"guest"` // what the guest sees (vda)
	RdOps   int64  `json:"rd_ops"`
	WrOps   int64  `json:"wr_ops"`
	RdBytes int64  `json:"rd_bytes"`
	WrBytes int64  `json:"wr_bytes"`
}

// VifStats are one vif's cumulative counters as the guest sees them
// (its tx is what the host's tap received).
type VifStats struct {
	Index     int    `json:"index"` // its place in the domain's vifs (vif N)
	Tap       string `json:"tap"`
	RxBytes   int64  `json:"rx_bytes"`
	TxBytes   int64  `json:"tx_bytes"`
	RxPackets int64  `json:"rx_packets"`
	TxPackets int64  `json:"tx_packets"`
}

// Stats is GET /1.0/stats.
type Stats struct {
	Time        time.Time     `json:"time"`
	IntervalSec float64       `json:"interval_sec"`
	SampleMs    float64       `json:"sample_ms"` // what collecting this sample cost the daemon
	CPUs        int           `json:"cpus"`
	MemTotalKiB int64         `json:"mem_total_kib"`
	MemFreeKiB  int64         `json:"mem_free_kib"`
	Domains     []DomainStats `json:"domains"`
}

// History is a domain's recent figures (GET /1.0/domains/{name}/history):
// a point a second over the last 10 minutes (Fine) and a point a minute,
// the minute's mean, over the last 24 hours (Coarse); oldest first.
type History struct {
	Domain string         `json:"domain"`
	Fine   []HistoryPoint `json:"fine"`
	Coarse []HistoryPoint `json:"coarse"`
}

// HistoryPoint is a domain's figures at Time (unix seconds): rates per
// second over the sampling interval.
type HistoryPoint struct {
	Time      int64   `json:"t"`
	CPUPct    float64 `json:"cpu_pct"`
	StealPct  float64 `json:"steal_pct"`
	MemMiB    float64 `json:"mem_mib"`
	DiskRdBps float64 `json:"disk_rd_bps"`
	DiskWrBps float64 `json:"disk_wr_bps"`
	NetRxBps  float64 `json:"net_rx_bps"`
	NetTxBps  float64 `json:"net_tx_bps"`
}
