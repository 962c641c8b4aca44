package host

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/ringfence/ringfence/internal/api"
)

// Ledger admits domains against host memory and CPUs: Total - Reserved -
// sum(maxmem + overhead) never goes below zero, and admitted vCPUs never
// exceed host CPUs x ratio (1.0 = no overcommit). The daemon rebuilds it
// from the store at start, so a restart cannot forget a reservation.
type Ledger struct {
	mu       sync.Mutex
	total    int
	reserved int
	cpus     int
	ratio    float64
	entries  map[string]api.LedgerEntry
}

// NewLedger makes a ledger for totalMiB of host memory of which
// reservedMiB stay with the host (like Xen's dom0_mem), and cpus host CPUs
// that may carry cpus x ratio vCPUs.
func NewLedger(totalMiB, reservedMiB, cpus int, ratio float64) *Ledger {
	if ratio <= 0 {
		ratio = 1
	}
	return &Ledger{total: totalMiB, reserved: reservedMiB, cpus: cpus, ratio: ratio, entries: map[string]api.LedgerEntry{}}
}

func (l *Ledger) usedLocked() (mem, vcpus int) {
	for _, e := range l.entries {
		mem += e.MemoryMiB + e.OverheadMiB
		vcpus += e.VCPUs
	}
	return
}

func (l *Ledger) vcpuCap() int { return int(float64(l.cpus)*l.ratio + 1e-9) }

// holders lists who holds a resource, biggest first, for refusals.
func (l *Ledger) holders(what func(api.LedgerEntry) int, unit string) string {
	es := make([]api.LedgerEntry, 0, len(l.entries))
	for _, e := range l.entries {
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool {
		if what(es[i]) != what(es[j]) {
			return what(es[i]) > what(es[j])
		}
		return es[i].Domain < es[j].Domain
	})
	var parts []string
	for i, e := range es {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(es)-5))
			break
		}
		parts = append(parts, fmt.Sprintf("%s %d%s", e.Domain, what(e), unit))
	}
	if len(parts) == 0 {
		return "no domains"
	}
	return strings.Join(parts, ", ")
}

// Reserve admits a domain or returns an ErrInsufficient error naming the
// resource, what was asked, what is free and who holds the rest. Reserving
// again for the same domain replaces its entry (mem-max, vcpu changes).
func (l *Ledger) Reserve(domain string, memMiB, overheadMiB, vcpus int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	old, had := l.entries[domain]
	delete(l.entries, domain)
	usedMem, usedV := l.usedLocked()
	restore := func() {
		if had {
			l.entries[domain] = old
		}
	}
	free := l.total - l.reserved - usedMem
	if ask := memMiB + overheadMiB; ask > free {
		restore()
		return api.Errorf(api.ErrInsufficient, "memory: %s asks %d MiB (%d guest + %d QEMU overhead), %d MiB free of %d (host keeps %d MiB; held by %s); lower memory/maxmem or free memory",
			domain, ask, memMiB, overheadMiB, free, l.total, l.reserved, l.holders(func(e api.LedgerEntry) int { return e.MemoryMiB + e.OverheadMiB }, " MiB"))
	}
	if freeV := l.vcpuCap() - usedV; vcpus > freeV {
		restore()
		return api.Errorf(api.ErrInsufficient, "vcpus: %s asks %d vCPUs, %d free of %d (%d host CPUs x ratio %g; held by %s); lower vcpus/maxvcpus or raise `serve --vcpu-ratio`",
			domain, vcpus, freeV, l.vcpuCap(), l.cpus, l.ratio, l.holders(func(e api.LedgerEntry) int { return e.VCPUs }, ""))
	}
	l.entries[domain] = api.LedgerEntry{Domain: domain, MemoryMiB: memMiB, OverheadMiB: overheadMiB, VCPUs: vcpus}
	return nil
}

// Adopt records a domain that already runs (found at a daemon's start)
// whatever the ledger says: it holds its resources, and refusing to count
// it would only hide an oversell. It returns an error describing the
// oversell when the host is over its limits with it; until the holders
// shrink, every new Reserve is refused by the same arithmetic.
func (l *Ledger) Adopt(domain string, memMiB, overheadMiB, vcpus int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries[domain] = api.LedgerEntry{Domain: domain, MemoryMiB: memMiB, OverheadMiB: overheadMiB, VCPUs: vcpus}
	return l.overLocked()
}

func (l *Ledger) overLocked() error {
	usedMem, usedV := l.usedLocked()
	if free := l.total - l.reserved - usedMem; free < 0 {
		return fmt.Errorf("memory is oversold by %d MiB (the running domains hold more than the host may give: %s)", -free, l.holders(func(e api.LedgerEntry) int { return e.MemoryMiB + e.OverheadMiB }, " MiB"))
	}
	if freeV := l.vcpuCap() - usedV; freeV < 0 {
		return fmt.Errorf("vCPUs are oversold by %d (%d host CPUs x ratio %g; held by %s)", -freeV, l.cpus, l.ratio, l.holders(func(e api.LedgerEntry) int { return e.VCPUs }, ""))
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
	usedMem, usedV := l.usedLocked()
	out := api.Ledger{TotalMiB: l.total, ReservedMiB: l.reserved, FreeMiB: l.total - l.reserved - usedMem,
		CPUs: l.cpus, VCPURatio: l.ratio, VCPUsFree: l.vcpuCap() - usedV}
	for _, e := range l.entries {
		out.Entries = append(out.Entries, e)
	}
	sort.Slice(out.Entries, func(i, j int) bool { return out.Entries[i].Domain < out.Entries[j].Domain })
	return out
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
