package netmgr

import (
	"context"
	"encoding/json"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store"
)

const (
	keyLeases = "leases/" // leases/<network>/<mac>
	// leaseTime is what DHCP grants and how long an address stays with a
	// MAC after its domain has gone.
	leaseTime = time.Hour
)

func leaseKey(netName, mac string) string { return keyLeases + netName + "/" + mac }

func (m *Manager) loadLeases(ctx context.Context) error {
	kvs, err := m.st.List(ctx, keyLeases)
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		var l api.Lease
		if json.Unmarshal(kv.Value, &l) != nil || l.Network == "" {
			continue
		}
		if m.leases[l.Network] == nil {
			m.leases[l.Network] = map[string]api.Lease{}
		}
		m.leases[l.Network][l.MAC] = l
	}
	return nil
}

// putLease writes a lease through to the store. Caller holds fw.
func (m *Manager) putLease(ctx context.Context, l api.Lease) error {
	l.Active = false // derived from the ports, never stored
	b, _ := json.Marshal(l)
	if err := store.Put(ctx, m.st, leaseKey(l.Network, l.MAC), b); err != nil {
		return err
	}
	if m.leases[l.Network] == nil {
		m.leases[l.Network] = map[string]api.Lease{}
	}
	m.leases[l.Network][l.MAC] = l
	return nil
}

func (m *Manager) dropLeases(ctx context.Context, netName string) {
	m.fw.Lock()
	defer m.fw.Unlock()
	m.st.Update(ctx, func(tx store.Tx) error {
		for mac := range m.leases[netName] {
			tx.Delete(leaseKey(netName, mac))
		}
		return nil
	})
	delete(m.leases, netName)
}

// activeMAC reports whether a running vif with mac is on bridge. Caller
// holds fw.
func (m *Manager) activeMAC(bridge, mac string) bool {
	for _, p := range m.ports {
		if p.bridge == bridge && p.mac == mac {
			return true
		}
	}
	return false
}

// reserve gives mac its address on NAT network n: fixed (the vif's ip=)
// or the one it had, or the first free one. An address is taken while a
// running vif holds it or its lease has not expired. Caller holds fw.
func (m *Manager) reserve(ctx context.Context, n api.Network, dom, mac string, fixed netip.Addr) (api.Lease, error) {
	p, _ := netip.ParsePrefix(n.Subnet)
	gw := p.Addr().Next()
	now := time.Now()
	holder := func(ip netip.Addr) (api.Lease, bool) {
		for _, l := range m.leases[n.Name] {
			if l.MAC != mac && l.IP == ip.String() && (m.activeMAC(n.Bridge, l.MAC) || l.Expires.After(now)) {
				return l, true
			}
		}
		return api.Lease{}, false
	}
	l := api.Lease{Network: n.Name, MAC: mac, Domain: dom, Expires: now.Add(leaseTime)}
	switch {
	case fixed.IsValid():
		if !p.Contains(fixed) || fixed == p.Addr() || fixed == gw || fixed == lastAddr(p) {
			return l, api.Errorf(api.ErrInvalid, "ip=%s is not a guest address of network %s (%s; %s is the gateway)", fixed, n.Name, n.Subnet, gw)
		}
		if h, ok := holder(fixed); ok {
			if m.activeMAC(n.Bridge, h.MAC) {
				return l, api.Errorf(api.ErrConflict, "ip=%s on network %s is in use by %s (MAC %s); pick another address", fixed, n.Name, h.Domain, h.MAC)
			}
			// The configuration wins over a lease left by a domain that
			// is gone.
			m.st.Update(ctx, func(tx store.Tx) error { return tx.Delete(leaseKey(n.Name, h.MAC)) })
			delete(m.leases[n.Name], h.MAC)
		}
		l.IP, l.Fixed = fixed.String(), true
	default:
		if old, ok := m.leases[n.Name][mac]; ok && !old.Fixed {
			if ip, err := netip.ParseAddr(old.IP); err == nil && p.Contains(ip) {
				if _, taken := holder(ip); !taken {
					l.IP = old.IP
				}
			}
		}
		for ip := gw.Next(); l.IP == "" && p.Contains(ip) && ip != lastAddr(p); ip = ip.Next() {
			if _, taken := holder(ip); !taken && !m.fixedElsewhere(n.Bridge, ip) {
				l.IP = ip.String()
			}
		}
		if l.IP == "" {
			return l, api.Errorf(api.ErrConflict, "network %s (%s) has no free address left; use a larger subnet or free a lease", n.Name, n.Subnet)
		}
	}
	return l, m.putLease(ctx, l)
}

// fixedElsewhere: a running vif on bridge lists ip in ip= (not leased yet
// on a network created later, for instance). Caller holds fw.
func (m *Manager) fixedElsewhere(bridge string, ip netip.Addr) bool {
	for _, p := range m.ports {
		if p.bridge == bridge {
			for _, a := range p.ips {
				if a == ip {
					return true
				}
			}
		}
	}
	return false
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Leases lists a NAT network's leases by address.
func (m *Manager) Leases(name string) ([]api.Lease, error) {
	n, err := m.Get(name)
	if err != nil {
		return nil, err
	}
	if !n.NAT {
		return nil, api.Errorf(api.ErrInvalid, "network %s is bridged: addresses there come from the uplink's network, not from ringfence", name)
	}
	m.fw.Lock()
	defer m.fw.Unlock()
	out := []api.Lease{}
	for _, l := range m.leases[name] {
		l.Active = m.activeMAC(n.Bridge, l.MAC)
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := netip.ParseAddr(out[i].IP)
		b, _ := netip.ParseAddr(out[j].IP)
		return a.Less(b)
	})
	return out, nil
}

// lookupLease finds the lease for mac (DHCP) on a network. Caller must not
// hold fw.
func (m *Manager) lookupLease(netName, mac string) (api.Lease, bool) {
	m.fw.Lock()
	defer m.fw.Unlock()
	l, ok := m.leases[netName][strings.ToLower(mac)]
	return l, ok
}

// renew extends a lease the guest asked for again.
func (m *Manager) renew(netName, mac string) {
	m.fw.Lock()
	defer m.fw.Unlock()
	if l, ok := m.leases[netName][mac]; ok {
		l.Expires = time.Now().Add(leaseTime)
		if err := m.putLease(context.Background(), l); err != nil {
			m.log.Warn("renewing lease", "network", netName, "mac", mac, "err", err)
		}
	}
}

// resolve answers DNS for a domain's name on a network (its vifs'
// leases; the running one first).
func (m *Manager) resolve(netName, name string) (netip.Addr, bool) {
	n := m.netByName(netName)
	m.fw.Lock()
	defer m.fw.Unlock()
	var best netip.Addr
	for _, l := range m.leases[netName] {
		if !strings.EqualFold(l.Domain, name) {
			continue
		}
		ip, err := netip.ParseAddr(l.IP)
		if err != nil {
			continue
		}
		if m.activeMAC(n.Bridge, l.MAC) {
			return ip, true
		}
		if l.Expires.After(time.Now()) {
			best = ip
		}
	}
	return best, best.IsValid()
}

func (m *Manager) netByName(name string) api.Network {
	m.cacheMu.RLock()
	defer m.cacheMu.RUnlock()
	return m.byName[name]
}
