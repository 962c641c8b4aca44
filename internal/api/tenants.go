package api

import "time"

// Tenant is a customer of the host: it owns domains, networks and pools
// (volumes), its users (tokens of the tenant roles) see and touch only
// those, and its quota is a reservation in the host's ledger.
type Tenant struct {
	Name    string      `json:"name"`
	Quota   TenantQuota `json:"quota"`
	Created time.Time   `json:"created"`
	// Usage is what the tenant holds now (filled in on every read).
	Usage TenantUsage `json:"usage"`
}

// TenantQuota is what a tenant may hold. Memory and vCPUs are reserved in
// the host's ledger when the tenant is made or its quota raised (nothing
// else may use them); the tenant's domains draw from that reservation and
// nothing beyond it: 0 reserves nothing, so no domain of it can run. Disk
// bounds the virtual size of its volumes and disks (0: none). Transfer
// bounds what its domains' vifs move (rx + tx) in a calendar month (UTC;
// 0: no quota); crossing it takes TransferAction (notify, pause,
// throttle:RATE; default notify) on its domains (internal/usage).
type TenantQuota struct {
	// MemoryMiB counts what the ledger counts for each domain: guest
	// memory (maxmem) plus QEMU's overhead.
	MemoryMiB      int    `json:"memory_mib"`
	VCPUs          int    `json:"vcpus"`
	DiskBytes      int64  `json:"disk_bytes"`
	TransferBytes  int64  `json:"transfer_bytes"`
	TransferAction string `json:"transfer_action,omitempty"`
}

// TenantUsage is what a tenant holds against its quota, and what it owns.
type TenantUsage struct {
	MemoryMiB int   `json:"memory_mib"` // its running domains' ledger entries
	VCPUs     int   `json:"vcpus"`
	DiskBytes int64 `json:"disk_bytes"` // virtual size of its volumes and disks
	// TransferBytes is its domains' vif bytes (rx + tx) this month, as
	// the usage ledger counts them against the transfer quota.
	TransferBytes int64    `json:"transfer_bytes"`
	Domains       []string `json:"domains,omitempty"`
	Networks      []string `json:"networks,omitempty"`
	Pools         []string `json:"pools,omitempty"`
	Tokens        []string `json:"tokens,omitempty"`
}

// TenantRequest makes a tenant (POST /1.0/tenants).
type TenantRequest struct {
	Name  string      `json:"name"`
	Quota TenantQuota `json:"quota"`
}

// TenantUpdate changes a tenant's quota (PUT /1.0/tenants/{tenant}): a
// field left out keeps its value. A quota below what is in use is refused.
type TenantUpdate struct {
	MemoryMiB      *int    `json:"memory_mib,omitempty"`
	VCPUs          *int    `json:"vcpus,omitempty"`
	DiskBytes      *int64  `json:"disk_bytes,omitempty"`
	TransferBytes  *int64  `json:"transfer_bytes,omitempty"`
	TransferAction *string `json:"transfer_action,omitempty"`
}

// LedgerTenant is one tenant's reservation in the ledger and how much of
// it its domains hold.
type LedgerTenant struct {
	Tenant        string `json:"tenant"`
	MemoryMiB     int    `json:"memory_mib"`
	VCPUs         int    `json:"vcpus"`
	UsedMemoryMiB int    `json:"used_memory_mib"`
	UsedVCPUs     int    `json:"used_vcpus"`
}
