package api

// Usage accounting (internal/usage): each domain's life is a sequence of
// records [start, end) in integer nanoseconds that tile time exactly,
// each carrying what the domain held and what it measurably used.

// EventUsage is the event type of usage announcements (a transfer quota
// crossed); Event.Action says which.
const EventUsage = "usage"

// Usage event actions.
const (
	EvQuotaCrossed = "quota-crossed" // Detail: the quota, the use, the action taken
)

// UsageAlloc is what a domain held during a record. A change of any of
// it closes the record and opens the next.
type UsageAlloc struct {
	State     State       `json:"state"` // "" while it is being started
	Tenant    string      `json:"tenant,omitempty"`
	VCPUs     int         `json:"vcpus"`
	MaxMemMiB int         `json:"maxmem_mib"`
	MemMiB    int         `json:"mem_mib"` // the balloon's target (mem-set)
	Disks     []UsageDisk `json:"disks,omitempty"`
	Vifs      []string    `json:"vifs,omitempty"` // MACs
}

// UsageDisk is one volume a domain held and its size.
type UsageDisk struct {
	VDev  string `json:"vdev"`
	Bytes int64  `json:"bytes"`
}

// UsageCounters are measured figures: a record's deltas, or a domain's
// running totals (monotonic across QEMU restarts, save/restore and
// migration).
type UsageCounters struct {
	CPUNs        int64 `json:"cpu_ns"`   // the domain's cgroup
	StealNs      int64 `json:"steal_ns"` // vCPU threads runnable, not running
	DiskRdBytes  int64 `json:"disk_rd_bytes"`
	DiskWrBytes  int64 `json:"disk_wr_bytes"`
	DiskRdOps    int64 `json:"disk_rd_ops"`
	DiskWrOps    int64 `json:"disk_wr_ops"`
	NetRxBytes   int64 `json:"net_rx_bytes"` // as the guest sees it: received
	NetTxBytes   int64 `json:"net_tx_bytes"`
	NetRxPackets int64 `json:"net_rx_packets"`
	NetTxPackets int64 `json:"net_tx_packets"`
	// Vifs split the net figures by vif (MAC).
	Vifs map[string]UsageNet `json:"vifs,omitempty"`
}

// UsageNet is one vif's counters.
type UsageNet struct {
	RxBytes   int64 `json:"rx_bytes"`
	TxBytes   int64 `json:"tx_bytes"`
	RxPackets int64 `json:"rx_packets"`
	TxPackets int64 `json:"tx_packets"`
}

// UsageRecord is one closed (or, with Open, the current) record.
type UsageRecord struct {
	Domain  string        `json:"domain"`
	StartNs int64         `json:"start_ns"` // Unix ns
	EndNs   int64         `json:"end_ns"`
	Open    bool          `json:"open,omitempty"`
	Reason  string        `json:"reason,omitempty"` // why it closed
	Alloc   UsageAlloc    `json:"alloc"`
	Delta   UsageCounters `json:"delta"`
	// Totals are the domain's running totals at EndNs.
	Totals UsageCounters `json:"totals"`
}

// UsageRow is one line of GET /1.0/usage: a domain's records summed over
// one period (hour, day, month) or, without ?by, one record.
type UsageRow struct {
	Domain  string `json:"domain"`
	Tenant  string `json:"tenant,omitempty"`
	StartNs int64  `json:"start_ns"` // the period's (or the record's) bounds
	EndNs   int64  `json:"end_ns"`
	// Ns is the time the domain existed within it; RunNs the part it
	// was running or paused (its vCPUs and RAM held).
	Ns    int64 `json:"ns"`
	RunNs int64 `json:"run_ns"`
	// VCPUNs, MemMiBNs and DiskByteNs are allocation integrals:
	// vCPUs × ns, MiB × ns (maxmem), bytes × ns, while held (disks:
	// whenever the domain exists).
	VCPUNs     float64       `json:"vcpu_ns"`
	MemMiBNs   float64       `json:"mem_mib_ns"`
	DiskByteNs float64       `json:"disk_byte_ns"`
	Records    int           `json:"records"`
	Delta      UsageCounters `json:"delta"`
	Reason     string        `json:"reason,omitempty"` // a single record's
	Alloc      *UsageAlloc   `json:"alloc,omitempty"`  // a single record's
	// Totals are a single record's running totals at its end.
	Totals *UsageCounters `json:"totals,omitempty"`
}

// UsagePage is a page of GET /1.0/usage; Next is the cursor of the next
// page ("" = none).
type UsagePage struct {
	Rows []UsageRow `json:"rows"`
	Next string     `json:"next,omitempty"`
}

// InvoiceLine is one rated figure of a tenant's month.
type InvoiceLine struct {
	Tenant   string  `json:"tenant"`
	Item     string  `json:"item"` // vcpu-hours, ram-gib-hours, disk-gib-months, transfer-gb, p95-mbit
	Quantity float64 `json:"quantity"`
	Unit     float64 `json:"unit_price"`
	Amount   float64 `json:"amount"`
}

// Invoice is GET /1.0/usage/invoice: a month's lines per tenant ("" is
// the host's own domains).
type Invoice struct {
	Month    string             `json:"month"`
	Currency string             `json:"currency,omitempty"`
	Lines    []InvoiceLine      `json:"lines"`
	Totals   map[string]float64 `json:"totals"` // per tenant
}
