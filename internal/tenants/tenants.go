// Package tenants is the host's tenants: their records in the store
// (tenants/NAME: the quota), their memory and vCPU reservations in the
// host's ledger, what each holds against its quota (usage), and the one
// rule of what a tenant's domain may use (rules.go). Ownership itself is
// a field of each object (domain, network, pool), kept by its owner
// package; this package only reads it.
package tenants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/names"
	"github.com/ringfence/ringfence/internal/spec"
	"github.com/ringfence/ringfence/internal/store"
)

// Prefix is the store's key prefix: tenants/NAME.
const Prefix = "tenants/"

// Key is the store key of a tenant.
func Key(name string) string { return Prefix + name }

// record is a tenant in the store.
type record struct {
	Quota   api.TenantQuota `json:"quota"`
	Created time.Time       `json:"created"`
}

// Sources are what the manager reads of the rest of the host; the daemon
// wires them (the domain manager, pools, networks and tokens each own
// their objects and their owner field).
type Sources struct {
	// Domains are every domain, the stopped defined ones too.
	Domains func() []api.Domain
	// Stats is the latest sample of the running domains (top).
	Stats func() api.Stats
	// Transfer is a tenant's transfer this month (the usage ledger's);
	// nil: the running domains' counters since each started.
	Transfer func(tenant string) int64
	Pools    func(ctx context.Context) ([]api.Pool, error)
	Volumes  func(p api.Pool) ([]api.Volume, error)
	Networks func() []api.Network
	// DiskSize is a disk image's virtual size (format: raw, qcow2).
	DiskSize func(path, format string) (int64, error)
	// Tokens names the live tokens of a tenant, read with list.
	Tokens func(list func(prefix string) ([]store.KV, error), tenant string) ([]string, error)
}

// Manager keeps the tenants.
type Manager struct {
	st     store.Store
	ledger *host.Ledger
	Src    Sources
	// mu serialises changes of tenants; disk serialises the disk quota's
	// check with the change it admits (a volume made, a clone's disks).
	mu, disk sync.Mutex
	Now      func() time.Time
}

// New loads the tenants and adopts their reservations into the ledger,
// whatever it says (as the domains that run are adopted: the host's
// settings may have changed; an oversell is the host's warning).
func New(ctx context.Context, st store.Store, ledger *host.Ledger) (*Manager, error) {
	m := &Manager{st: st, ledger: ledger, Now: time.Now}
	kvs, err := st.List(ctx, Prefix)
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		var r record
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("tenant %s: %w", kv.Key, err)
		}
		ledger.AdoptTenant(strings.TrimPrefix(kv.Key, Prefix), r.Quota.MemoryMiB, r.Quota.VCPUs)
	}
	return m, nil
}

// NotFound is the answer for a tenant that does not exist (and, to a
// tenant's principal, for another tenant).
func NotFound(name string) error {
	return api.Errorf(api.ErrNotFound, "no tenant named %q (see `ringfence tenant list`)", name)
}

func (m *Manager) load(ctx context.Context, name string) (record, error) {
	var r record
	if err := names.Check("tenant", name); err != nil {
		return r, api.Errorf(api.ErrInvalid, "%v", err)
	}
	b, err := m.st.Get(ctx, Key(name))
	if errors.Is(err, store.ErrNotFound) {
		return r, NotFound(name)
	} else if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// Exists says whether a tenant exists (a not-found error if not).
func (m *Manager) Exists(ctx context.Context, name string) error {
	_, err := m.load(ctx, name)
	return err
}

// checkQuota refuses negative figures.
func checkQuota(q api.TenantQuota) error {
	if q.MemoryMiB < 0 || q.VCPUs < 0 || q.DiskBytes < 0 || q.TransferBytes < 0 {
		return api.Errorf(api.ErrInvalid, "a quota cannot be negative (memory %d MiB, vcpus %d, disk %d bytes, transfer %d bytes)", q.MemoryMiB, q.VCPUs, q.DiskBytes, q.TransferBytes)
	}
	if err := spec.ValidTransferAction(q.TransferAction); err != nil {
		return api.Errorf(api.ErrInvalid, "transfer action: %v", err)
	}
	return nil
}

// Create makes a tenant and reserves its memory and vCPUs in the ledger
// (refused, with the numbers, when the host cannot guarantee them).
func (m *Manager) Create(ctx context.Context, req api.TenantRequest) (api.Tenant, error) {
	if err := names.Check("tenant", req.Name); err != nil {
		return api.Tenant{}, api.Errorf(api.ErrInvalid, "%v", err)
	}
	if err := checkQuota(req.Quota); err != nil {
		return api.Tenant{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.load(ctx, req.Name); err == nil {
		return api.Tenant{}, api.Errorf(api.ErrConflict, "a tenant named %q exists (`ringfence tenant set %s ...` changes its quota)", req.Name, req.Name)
	}
	if err := m.ledger.ReserveTenant(req.Name, req.Quota.MemoryMiB, req.Quota.VCPUs); err != nil {
		return api.Tenant{}, err
	}
	r := record{Quota: req.Quota, Created: m.Now().UTC().Truncate(time.Second)}
	b, _ := json.Marshal(r)
	if err := store.Put(ctx, m.st, Key(req.Name), b); err != nil {
		m.ledger.ReleaseTenant(req.Name)
		return api.Tenant{}, err
	}
	return m.view(ctx, req.Name, r), nil
}

// Update changes a tenant's quota: memory and vCPUs in the ledger
// (refused below what its domains hold, or beyond what the host can
// guarantee), disk not below what its volumes and disks hold.
func (m *Manager) Update(ctx context.Context, name string, u api.TenantUpdate) (api.Tenant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.load(ctx, name)
	if err != nil {
		return api.Tenant{}, err
	}
	old, q := r.Quota, r.Quota
	set(&q.MemoryMiB, u.MemoryMiB)
	set(&q.VCPUs, u.VCPUs)
	set(&q.DiskBytes, u.DiskBytes)
	set(&q.TransferBytes, u.TransferBytes)
	set(&q.TransferAction, u.TransferAction)
	if err := checkQuota(q); err != nil {
		return api.Tenant{}, err
	}
	if q.DiskBytes < old.DiskBytes {
		m.disk.Lock()
		defer m.disk.Unlock()
		used, err := m.DiskUsage(ctx, name)
		if err != nil {
			return api.Tenant{}, err
		}
		if q.DiskBytes < used {
			return api.Tenant{}, api.Errorf(api.ErrConflict, "disk: tenant %s's volumes and disks hold %s (%d bytes): its quota cannot go below that; delete some first", name, Size(used), used)
		}
	}
	if err := m.ledger.ReserveTenant(name, q.MemoryMiB, q.VCPUs); err != nil {
		return api.Tenant{}, err
	}
	r.Quota = q
	b, _ := json.Marshal(r)
	if err := store.Put(ctx, m.st, Key(name), b); err != nil {
		m.ledger.AdoptTenant(name, old.MemoryMiB, old.VCPUs)
		return api.Tenant{}, err
	}
	return m.view(ctx, name, r), nil
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// Delete removes a tenant that owns nothing (no domain, network, pool or
// live token) and gives its reservation back to the host.
func (m *Manager) Delete(ctx context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.load(ctx, name)
	if err != nil {
		return err
	}
	u := m.owned(ctx, name)
	if len(u.Domains)+len(u.Networks)+len(u.Pools)+len(u.Tokens) > 0 {
		return api.Errorf(api.ErrConflict, "tenant %s still owns %s: destroy or undefine its domains, delete its networks and pools, revoke its tokens first", name, ownedList(u))
	}
	if err := m.ledger.ReleaseTenant(name); err != nil {
		return err
	}
	err = m.st.Update(ctx, func(tx store.Tx) error {
		// A token made meanwhile is seen here: its creation checked the
		// tenant in a transaction of its own.
		if toks, err := m.tokens(tx.List, name); err != nil || len(toks) > 0 {
			if err == nil {
				err = api.Errorf(api.ErrConflict, "tenant %s still owns tokens %s: revoke them first", name, strings.Join(toks, ", "))
			}
			return err
		}
		return tx.Delete(Key(name))
	})
	if err != nil {
		m.ledger.AdoptTenant(name, r.Quota.MemoryMiB, r.Quota.VCPUs)
	}
	return err
}

// ownedList says what a tenant owns, in one line.
func ownedList(u api.TenantUsage) string {
	var parts []string
	for _, o := range []struct {
		what  string
		names []string
	}{{"domains", u.Domains}, {"networks", u.Networks}, {"pools", u.Pools}, {"tokens", u.Tokens}} {
		if len(o.names) > 0 {
			parts = append(parts, o.what+" "+strings.Join(o.names, ", "))
		}
	}
	return strings.Join(parts, "; ")
}

// Get is one tenant with its usage.
func (m *Manager) Get(ctx context.Context, name string) (api.Tenant, error) {
	r, err := m.load(ctx, name)
	if err != nil {
		return api.Tenant{}, err
	}
	return m.view(ctx, name, r), nil
}

// List is every tenant with its usage, by name.
func (m *Manager) List(ctx context.Context) ([]api.Tenant, error) {
	kvs, err := m.st.List(ctx, Prefix)
	if err != nil {
		return nil, err
	}
	out := []api.Tenant{}
	for _, kv := range kvs {
		var r record
		if json.Unmarshal(kv.Value, &r) == nil {
			out = append(out, m.view(ctx, strings.TrimPrefix(kv.Key, Prefix), r))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// view is a tenant as the API shows it: quota and usage.
func (m *Manager) view(ctx context.Context, name string, r record) api.Tenant {
	u := m.owned(ctx, name)
	if lt, ok := m.ledger.Tenant(name); ok {
		u.MemoryMiB, u.VCPUs = lt.UsedMemoryMiB, lt.UsedVCPUs
	}
	u.DiskBytes, _ = m.DiskUsage(ctx, name)
	u.TransferBytes = m.transfer(name, u.Domains)
	return api.Tenant{Name: name, Quota: r.Quota, Created: r.Created, Usage: u}
}

// owned names what a tenant owns: domains, networks, pools, live tokens.
func (m *Manager) owned(ctx context.Context, name string) api.TenantUsage {
	var u api.TenantUsage
	for _, d := range m.domains() {
		if d.Tenant == name {
			u.Domains = append(u.Domains, d.Spec.Name)
		}
	}
	if m.Src.Networks != nil {
		for _, n := range m.Src.Networks() {
			if n.Tenant == name {
				u.Networks = append(u.Networks, n.Name)
			}
		}
	}
	for _, p := range m.pools(ctx) {
		if p.Tenant == name {
			u.Pools = append(u.Pools, p.Name)
		}
	}
	u.Tokens, _ = m.tokens(func(p string) ([]store.KV, error) { return m.st.List(ctx, p) }, name)
	sort.Strings(u.Domains)
	return u
}

func (m *Manager) domains() []api.Domain {
	if m.Src.Domains == nil {
		return nil
	}
	return m.Src.Domains()
}

func (m *Manager) pools(ctx context.Context) []api.Pool {
	if m.Src.Pools == nil {
		return nil
	}
	ps, _ := m.Src.Pools(ctx)
	return ps
}

func (m *Manager) tokens(list func(string) ([]store.KV, error), name string) ([]string, error) {
	if m.Src.Tokens == nil {
		return nil, nil
	}
	return m.Src.Tokens(list, name)
}

// transfer is the tenant's vif bytes (rx + tx) this month, as the usage
// ledger counts them against its transfer quota (Sources.Transfer);
// without one, the named domains' counters since each QEMU started.
func (m *Manager) transfer(tenant string, domains []string) int64 {
	if m.Src.Transfer != nil {
		return m.Src.Transfer(tenant)
	}
	if m.Src.Stats == nil || len(domains) == 0 {
		return 0
	}
	mine := map[string]bool{}
	for _, d := range domains {
		mine[d] = true
	}
	var sum int64
	for _, s := range m.Src.Stats().Domains {
		if mine[s.Name] {
			sum += s.NetRxBytes + s.NetTxBytes
		}
	}
	return sum
}

// Size renders bytes in binary units, for messages and the CLI.
func Size(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTP"[exp])
}
