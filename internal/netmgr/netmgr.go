// Package netmgr owns the daemon's managed networks: records in the state
// store, bridges (and their uplinks) made with netlink through
// internal/network, and for NAT networks the gateway address, DHCP leases,
// DNS and masquerading. It also owns the per-vif anti-spoofing filter: the
// domain manager plugs every vif it starts and unplugs it when the tap
// goes. A vif's bridge= may name a managed network; any other name is an
// existing bridge used as it is (unmanaged, as in Xen).
package netmgr

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/network"
	"github.com/ringfence/ringfence/internal/revert"
	"github.com/ringfence/ringfence/internal/storage"
	"github.com/ringfence/ringfence/internal/store"
)

const keyNets = "networks/"

// Manager is the registry.
type Manager struct {
	st store.Store
	mu sync.Mutex
	// Users names the domains whose vifs are on bridge (set by the
	// daemon); a network in use cannot be deleted.
	Users func(bridge string) []string

	cacheMu sync.RWMutex
	byName  map[string]api.Network

	log *slog.Logger
	// fw guards the vif ports, the leases and the nftables tables, which
	// are rendered from both.
	fw     sync.Mutex
	ports  map[string]port // by tap
	leases map[string]map[string]api.Lease
	ready  bool // Sync has run: changes reach the kernel at once
	svcs   map[string]*services
}

// New loads the registry and makes sure every managed bridge exists (a
// host reboot drops them) with its uplink.
// The filter is not rendered until Sync, once the domain manager has
// plugged the vifs of the domains it re-attached: until then the kernel
// keeps the rules the previous daemon left, so guests are never unfiltered.
func New(ctx context.Context, st store.Store, log *slog.Logger) (*Manager, error) {
	m := &Manager{st: st, byName: map[string]api.Network{}, log: log, ports: map[string]port{},
		leases: map[string]map[string]api.Lease{}, svcs: map[string]*services{}}
	if err := m.loadLeases(ctx); err != nil {
		return nil, err
	}
	kvs, err := st.List(ctx, keyNets)
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		var n api.Network
		if json.Unmarshal(kv.Value, &n) != nil {
			continue
		}
		m.byName[n.Name] = n
		if n.Created {
			network.CreateBridge(n.Bridge)
		}
		if n.Uplink != "" {
			network.Enslave(n.Uplink, n.Bridge)
		}
		if n.NAT {
			if err := m.startNAT(n); err != nil {
				log.Error("NAT network not serving", "network", n.Name, "err", err)
			}
		}
	}
	return m, nil
}

// Close stops the DHCP and DNS servers (bridges, leases and rules stay).
func (m *Manager) Close() {
	m.fw.Lock()
	defer m.fw.Unlock()
	for name, s := range m.svcs {
		s.close()
		delete(m.svcs, name)
	}
}

// Bridge resolves a vif's bridge=: a managed network's bridge, or the
// name itself.
func (m *Manager) Bridge(name string) string {
	if name == "" {
		name = api.DefaultBridge // a record from before vifs had a default
	}
	m.cacheMu.RLock()
	defer m.cacheMu.RUnlock()
	if n, ok := m.byName[name]; ok {
		return n.Bridge
	}
	return name
}

// Network returns the managed network bridge names: by its name, or
// by its bridge ("" is xl's default bridge).
func (m *Manager) Network(bridge string) (api.Network, bool) {
	if bridge == "" {
		bridge = api.DefaultBridge
	}
	m.cacheMu.RLock()
	defer m.cacheMu.RUnlock()
	if n, ok := m.byName[bridge]; ok {
		return n, true
	}
	for _, n := range m.byName {
		if n.Bridge == bridge {
			return n, true
		}
	}
	return api.Network{}, false
}

// List returns the networks by name.
func (m *Manager) List() []api.Network {
	m.cacheMu.RLock()
	defer m.cacheMu.RUnlock()
	out := []api.Network{}
	for _, n := range m.byName {
		n.Ports = network.Ports(n.Bridge)
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get returns one network.
func (m *Manager) Get(name string) (api.Network, error) {
	m.cacheMu.RLock()
	defer m.cacheMu.RUnlock()
	n, ok := m.byName[name]
	if !ok {
		return n, NotFound(name)
	}
	n.Ports = network.Ports(n.Bridge)
	return n, nil
}

// NotFound is the answer for a network that does not exist (and, to a
// tenant, for one it may not see).
func NotFound(name string) error {
	return api.Errorf(api.ErrNotFound, "no network named %q (see `ringfence network list`)", name)
}

// Create makes a bridged network: the bridge (made if missing, kept if it
// exists) and its uplink. Nothing is left behind on error.
func (m *Manager) Create(ctx context.Context, req api.Network) (api.Network, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	subnet, err := m.checkRequest(&req)
	if err != nil {
		return req, err
	}
	r := revert.New()
	defer r.Fail()
	created, err := network.CreateBridge(req.Bridge)
	if err != nil {
		return req, api.Errorf(api.ErrInvalid, "%v", err)
	}
	if created {
		r.Add(func() { network.DeleteLink(req.Bridge) })
	}
	if req.Uplink != "" {
		if err := network.Enslave(req.Uplink, req.Bridge); err != nil {
			return req, api.Errorf(api.ErrInvalid, "%v", err)
		}
		r.Add(func() { network.Release(req.Uplink) })
	}
	n := api.Network{Name: req.Name, Bridge: req.Bridge, Uplink: req.Uplink, Created: created, Tenant: req.Tenant, Shared: req.Shared, Cluster: req.Cluster}
	if req.NAT {
		n.NAT, n.Subnet, n.Gateway = true, subnet.String(), subnet.Addr().Next().String()
		r.Add(func() { m.stopNAT(n) })
		if err := m.startNAT(n); err != nil {
			return req, api.Errorf(api.ErrInvalid, "%v", err)
		}
	}
	if err := m.record(ctx, r, n); err != nil {
		return req, err
	}
	r.Success()
	return n, nil
}

// checkRequest checks a network's names, that they are free, and a NAT
// network's subnet, which it returns.
func (m *Manager) checkRequest(req *api.Network) (netip.Prefix, error) {
	var subnet netip.Prefix
	if err := storage.CheckName("network", req.Name); err != nil {
		return subnet, err
	}
	if err := storage.CheckOwner("network", req.Tenant, req.Shared); err != nil {
		return subnet, err
	}
	if req.Bridge == "" {
		req.Bridge = req.Name
	}
	if err := network.CheckIfName("bridge", req.Bridge); err != nil {
		return subnet, api.Errorf(api.ErrInvalid, "%v", err)
	}
	if req.Uplink != "" {
		if err := network.CheckIfName("uplink", req.Uplink); err != nil {
			return subnet, api.Errorf(api.ErrInvalid, "%v", err)
		}
	}
	if req.NAT || req.Subnet != "" {
		if req.Uplink != "" {
			return subnet, api.Errorf(api.ErrInvalid, "a NAT network has no uplink: its guests reach out through the host's routing; drop --uplink (or --nat for a bridged network)")
		}
		var err error
		if subnet, err = parseSubnet(req.Subnet); err != nil {
			return subnet, api.Errorf(api.ErrInvalid, "%v", err)
		}
		if err := m.checkOverlap(subnet); err != nil {
			return subnet, err
		}
		req.NAT = true
	}
	if _, err := m.Get(req.Name); err == nil {
		return subnet, api.Errorf(api.ErrConflict, "a network named %q already exists", req.Name)
	}
	for _, n := range m.List() {
		if n.Bridge == req.Bridge {
			return subnet, api.Errorf(api.ErrConflict, "bridge %s already belongs to network %s", req.Bridge, n.Name)
		}
	}
	return subnet, nil
}

// record stores network n, caches it and, for NAT, renders the filter
// with it; each is undone by r if a later step fails.
func (m *Manager) record(ctx context.Context, r *revert.Reverter, n api.Network) error {
	b, _ := json.Marshal(n)
	if err := store.Put(ctx, m.st, keyNets+n.Name, b); err != nil {
		return err
	}
	r.Add(func() { store.Delete(ctx, m.st, keyNets+n.Name) })
	m.cacheMu.Lock()
	m.byName[n.Name] = n
	m.cacheMu.Unlock()
	r.Add(func() {
		m.cacheMu.Lock()
		delete(m.byName, n.Name)
		m.cacheMu.Unlock()
	})
	if n.NAT {
		if err := m.apply(); err != nil {
			return api.Errorf(api.ErrInvalid, "%v", err)
		}
	}
	return nil
}

// Delete removes a network no domain uses: its uplink is released and a
// bridge it made is deleted.
func (m *Manager) Delete(ctx context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.Get(name)
	if err != nil {
		return err
	}
	if m.Users != nil {
		if users := m.Users(n.Bridge); len(users) > 0 {
			return api.Errorf(api.ErrConflict, "network %s is in use by %s; destroy or move those domains first", name, strings.Join(users, ", "))
		}
	}
	if err := store.Delete(ctx, m.st, keyNets+name); err != nil {
		return err
	}
	m.cacheMu.Lock()
	delete(m.byName, name)
	m.cacheMu.Unlock()
	if n.NAT {
		m.stopNAT(n)
		m.dropLeases(ctx, name)
		if err := m.apply(); err != nil {
			m.log.Error("removing the network's masquerade rule", "network", name, "err", err)
		}
	}
	if n.Uplink != "" {
		network.Release(n.Uplink)
	}
	if n.Created {
		return network.DeleteLink(n.Bridge)
	}
	return nil
}
