package host

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/ringfence/ringfence/internal/api"
)

// Ledger admits domains against host memory and CPUs: Total - Reserved -
// what is committed never goes below zero, and committed vCPUs never
// exceed host CPUs x ratio (1.0 = no overcommit). What is committed is
// every host domain's entry and every tenant's reservation (a tenant's
// domains draw from its reservation, never from the rest of the host, and
// nothing else may use it). The daemon rebuilds it from the store at
// start, so a restart cannot forget a reservation.
type Ledger struct {
	mu       sync.Mutex
	total    int
	reserved int
	cpus     int
	ratio    float64
	entries  map[string]api.LedgerEntry
	tenants  map[string]api.LedgerTenant // reservations (MemoryMiB, VCPUs)
}

// NewLedger makes a ledger for totalMiB of host memory of which
// reservedMiB stay with the host (like Xen's dom0_mem), and cpus host CPUs
// that may carry cpus x ratio vCPUs.
func NewLedger(totalMiB, reservedMiB, cpus int, ratio float64) *Ledger {
	if ratio <= 0 {
		ratio = 1
	}
	return &Ledger{total: totalMiB, reserved: reservedMiB, cpus: cpus, ratio: ratio,
		entries: map[string]api.LedgerEntry{}, tenants: map[string]api.LedgerTenant{}}
}

// holding is what one holder has of the ledger: a domain or a tenant.
type holding struct {
	name       string
	mem, vcpus int
}

// heldBy is what the entries of tenant ("" = the host's own domains)
// hold, and by whom.
func (l *Ledger) heldBy(tenant string) (sum holding, by []holding) {
	for _, e := range l.entries {
		if e.Tenant == tenant {
			h := holding{e.Domain, e.MemoryMiB + e.OverheadMiB, e.VCPUs}
			sum.mem, sum.vcpus = sum.mem+h.mem, sum.vcpus+h.vcpus
			by = append(by, h)
		}
	}
	return sum, by
}

// committedLocked is what the host has given away, by holder: the host's
// domains, and each tenant's reservation (or what its domains hold, when
// that is more: an oversell adopted at a restart). A tenant's domains
// with no reservation (adopted after one was lost) count as themselves.
func (l *Ledger) committedLocked() (sum holding, by []holding) {
	tenants := map[string]bool{"": true}
	for _, e := range l.entries {
		tenants[e.Tenant] = true
	}
	for t := range l.tenants {
		tenants[t] = true
	}
	for t := range tenants {
		held, domains := l.heldBy(t)
		if r, ok := l.tenants[t]; ok {
			domains = []holding{{"tenant " + t, max(r.MemoryMiB, held.mem), max(r.VCPUs, held.vcpus)}}
		}
		for _, h := range domains {
			sum.mem, sum.vcpus = sum.mem+h.mem, sum.vcpus+h.vcpus
			by = append(by, h)
		}
	}
	return sum, by
}

func (l *Ledger) vcpuCap() int { return int(float64(l.cpus)*l.ratio + 1e-9) }

// listHolders names who holds a resource, biggest first, for refusals.
func listHolders(hs []holding, what func(holding) int, unit string) string {
	sort.Slice(hs, func(i, j int) bool {
		if what(hs[i]) != what(hs[j]) {
			return what(hs[i]) > what(hs[j])
		}
		return hs[i].name < hs[j].name
	})
	var parts []string
	for i, h := range hs {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(hs)-5))
			break
		}
		parts = append(parts, fmt.Sprintf("%s %d%s", h.name, what(h), unit))
	}
	if len(parts) == 0 {
		return "no domains"
	}
	return strings.Join(parts, ", ")
}

func memOf(h holding) int   { return h.mem }
func vcpusOf(h holding) int { return h.vcpus }

// Reserve admits a domain or returns an ErrInsufficient error naming the
// resource, what was asked, what is free and who holds the rest. A
// tenant's domain draws from its tenant's reservation, a host domain from
// what no tenant has reserved. Reserving again for the same domain
// replaces its entry (mem-max, vcpu changes).
func (l *Ledger) Reserve(e api.LedgerEntry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	old, had := l.entries[e.Domain]
	delete(l.entries, e.Domain)
	var err error
	if e.Tenant != "" {
		err = l.fitsTenant(e)
	} else {
		err = l.fitsHost(e)
	}
	if err != nil {
		if had {
			l.entries[e.Domain] = old
		}
		return err
	}
	l.entries[e.Domain] = e
	return nil
}

// fitsHost says whether a host domain fits what no one holds.
func (l *Ledger) fitsHost(e api.LedgerEntry) error {
	used, by := l.committedLocked()
	free := l.total - l.reserved - used.mem
	if ask := e.MemoryMiB + e.OverheadMiB; ask > free {
		return api.Errorf(api.ErrInsufficient, "memory: %s asks %d MiB (%d guest + %d QEMU overhead), %d MiB free of %d (host keeps %d MiB; held by %s); lower memory/maxmem or free memory",
			e.Domain, ask, e.MemoryMiB, e.OverheadMiB, free, l.total, l.reserved, listHolders(by, memOf, " MiB"))
	}
	if freeV := l.vcpuCap() - used.vcpus; e.VCPUs > freeV {
		return api.Errorf(api.ErrInsufficient, "vcpus: %s asks %d vCPUs, %d free of %d (%d host CPUs x ratio %g; held by %s); lower vcpus/maxvcpus or raise `serve --vcpu-ratio`",
			e.Domain, e.VCPUs, freeV, l.vcpuCap(), l.cpus, l.ratio, listHolders(by, vcpusOf, ""))
	}
	return nil
}

// fitsTenant says whether a tenant's domain fits what is left of its
// tenant's reservation.
func (l *Ledger) fitsTenant(e api.LedgerEntry) error {
	r, ok := l.tenants[e.Tenant]
	if !ok {
		return api.Errorf(api.ErrInsufficient, "%s belongs to tenant %s, which has no reservation on this host: `ringfence tenant create %s --memory M --vcpus N` first", e.Domain, e.Tenant, e.Tenant)
	}
	held, by := l.heldBy(e.Tenant)
	if ask, left := e.MemoryMiB+e.OverheadMiB, r.MemoryMiB-held.mem; ask > left {
		return api.Errorf(api.ErrInsufficient, "memory: tenant %s's quota is %d MiB and its domains hold %d MiB (%s); %s asks %d MiB (%d guest + %d QEMU overhead), %d MiB left; lower memory/maxmem or raise the quota (`ringfence tenant set %s --memory M`)",
			e.Tenant, r.MemoryMiB, held.mem, listHolders(by, memOf, " MiB"), e.Domain, ask, e.MemoryMiB, e.OverheadMiB, max(left, 0), e.Tenant)
	}
	if left := r.VCPUs - held.vcpus; e.VCPUs > left {
		return api.Errorf(api.ErrInsufficient, "vcpus: tenant %s's quota is %d vCPUs and its domains hold %d (%s); %s asks %d, %d left; lower vcpus/maxvcpus or raise the quota (`ringfence tenant set %s --vcpus N`)",
			e.Tenant, r.VCPUs, held.vcpus, listHolders(by, vcpusOf, ""), e.Domain, e.VCPUs, max(left, 0), e.Tenant)
	}
	return nil
}

// ReserveTenant reserves (or changes) a tenant's memory and vCPUs: what
// the host cannot guarantee beside everything else committed is refused,
// with the numbers, and so is a quota below what its domains hold.
func (l *Ledger) ReserveTenant(tenant string, memMiB, vcpus int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	held, by := l.heldBy(tenant)
	if memMiB < held.mem {
		return api.Errorf(api.ErrConflict, "memory: tenant %s's domains hold %d MiB (%s): its quota cannot go below that; stop some of them first",
			tenant, held.mem, listHolders(by, memOf, " MiB"))
	}
	if vcpus < held.vcpus {
		return api.Errorf(api.ErrConflict, "vcpus: tenant %s's domains hold %d vCPUs (%s): its quota cannot go below that; stop some of them first",
			tenant, held.vcpus, listHolders(by, vcpusOf, ""))
	}
	old, had := l.tenants[tenant]
	delete(l.tenants, tenant)
	restore := func() {
		if had {
			l.tenants[tenant] = old
		}
	}
	// Without its reservation, the tenant's domains count as themselves:
	// what is free is what the new reservation may take beyond them.
	used, others := l.committedLocked()
	if free := l.total - l.reserved - used.mem + held.mem; memMiB > free {
		restore()
		return api.Errorf(api.ErrInsufficient, "memory: tenant %s asks a reservation of %d MiB, %d MiB free of %d (host keeps %d MiB; held by %s); lower --memory or free memory",
			tenant, memMiB, free, l.total, l.reserved, listHolders(others, memOf, " MiB"))
	}
	if freeV := l.vcpuCap() - used.vcpus + held.vcpus; vcpus > freeV {
		restore()
		return api.Errorf(api.ErrInsufficient, "vcpus: tenant %s asks a reservation of %d vCPUs, %d free of %d (%d host CPUs x ratio %g; held by %s); lower --vcpus or raise `serve --vcpu-ratio`",
			tenant, vcpus, freeV, l.vcpuCap(), l.cpus, l.ratio, listHolders(others, vcpusOf, ""))
	}
	l.tenants[tenant] = api.LedgerTenant{Tenant: tenant, MemoryMiB: memMiB, VCPUs: vcpus}
	return nil
}

// AdoptTenant records a tenant's reservation found in the store at start,
// whatever the ledger says (as Adopt does for a running domain): it
// returns the oversell, if the host is over its limits with it.
func (l *Ledger) AdoptTenant(tenant string, memMiB, vcpus int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tenants[tenant] = api.LedgerTenant{Tenant: tenant, MemoryMiB: memMiB, VCPUs: vcpus}
	return l.overLocked()
}

// ReleaseTenant gives a tenant's reservation back to the host; refused
// while its domains hold part of it.
func (l *Ledger) ReleaseTenant(tenant string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if held, by := l.heldBy(tenant); len(by) > 0 {
		return api.Errorf(api.ErrConflict, "tenant %s's domains hold %d MiB and %d vCPUs (%s); destroy them first", tenant, held.mem, held.vcpus, listHolders(by, memOf, " MiB"))
	}
	delete(l.tenants, tenant)
	return nil
}

// Adopt records a domain that already runs (found at a daemon's start)
// whatever the ledger says: it holds its resources, and refusing to count
// it would only hide an oversell. It returns an error describing the
// oversell when the host is over its limits with it; until the holders
// shrink, every new Reserve is refused by the same arithmetic.
func (l *Ledger) Adopt(e api.LedgerEntry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries[e.Domain] = e
	return l.overLocked()
}

func (l *Ledger) overLocked() error {
	used, by := l.committedLocked()
	if free := l.total - l.reserved - used.mem; free < 0 {
		return fmt.Errorf("memory is oversold by %d MiB (the running domains and tenant reservations hold more than the host may give: %s)", -free, listHolders(by, memOf, " MiB"))
	}
	if freeV := l.vcpuCap() - used.vcpus; freeV < 0 {
		return fmt.Errorf("vCPUs are oversold by %d (%d host CPUs x ratio %g; held by %s)", -freeV, l.cpus, l.ratio, listHolders(by, vcpusOf, ""))
	}
	return nil
}

// Oversold says whether (and how) the host is over its limits.
func (l *Ledger) Oversold() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.overLocked()
}

// Release frees a domain's reservation; it is idempotent.
func (l *Ledger) Release(domain string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.entries, domain)
}

// Snapshot reports the ledger.
func (l *Ledger) Snapshot() api.Ledger {
	l.mu.Lock()
	defer l.mu.Unlock()
	used, _ := l.committedLocked()
	out := api.Ledger{TotalMiB: l.total, ReservedMiB: l.reserved, FreeMiB: l.total - l.reserved - used.mem,
		CPUs: l.cpus, VCPURatio: l.ratio, VCPUsFree: l.vcpuCap() - used.vcpus}
	for _, e := range l.entries {
		out.Entries = append(out.Entries, e)
	}
	sort.Slice(out.Entries, func(i, j int) bool { return out.Entries[i].Domain < out.Entries[j].Domain })
	for _, t := range l.tenants {
		held, _ := l.heldBy(t.Tenant)
		t.UsedMemoryMiB, t.UsedVCPUs = held.mem, held.vcpus
		out.Tenants = append(out.Tenants, t)
	}
	sort.Slice(out.Tenants, func(i, j int) bool { return out.Tenants[i].Tenant < out.Tenants[j].Tenant })
	return out
}

// Tenant is one tenant's reservation and use (ok false: it has none).
func (l *Ledger) Tenant(tenant string) (api.LedgerTenant, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.tenants[tenant]
	held, _ := l.heldBy(tenant)
	t.UsedMemoryMiB, t.UsedVCPUs = held.mem, held.vcpus
	return t, ok
}

// DefaultReserve is the host's share when none is configured: 10% of
// memory, at least 512 MiB.
func DefaultReserve(totalMiB int) int {
	r := totalMiB / 10
	if r < 512 {
		r = 512
	}
	return r
}

// Rename moves a domain's reservation to its new name (xl rename); the
// figures do not change, so nothing is admitted or freed.
func (l *Ledger) Rename(from, to string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[from]
	if !ok {
		return
	}
	delete(l.entries, from)
	e.Domain = to
	l.entries[to] = e
}
