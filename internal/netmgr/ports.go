package netmgr

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/network"
)

// port is a running vif as the network side sees it.
type port struct {
	domain, bridge, network, mac string
	ips                          []netip.Addr // what the tap may send from; none: unfiltered
	dhcp                         bool
}

// plug registers a vif whose tap domain's incarnation has just made:
// on a NAT network it reserves the vif's address (ip= or a lease), and
// when the vif has addresses its tap is filtered to them and its MAC.
// Addresses another running vif on the same bridge has are refused. On
// error nothing is left registered.
func (m *Manager) plug(ctx context.Context, domain, tap string, v api.Vif) error {
	var ips []netip.Addr
	for _, s := range v.IP {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return api.Errorf(api.ErrInvalid, "ip=%s is not an IPv4 or IPv6 address", s)
		}
		ips = append(ips, ip)
	}
	m.fw.Lock()
	defer m.fw.Unlock()
	n := m.netByName(v.Bridge)
	managed := n.Name != ""
	bridge := v.Bridge
	if managed {
		bridge = n.Bridge
	}
	for t, p := range m.ports {
		if t == tap || p.bridge != bridge {
			continue
		}
		for _, a := range p.ips {
			for _, b := range ips {
				if a == b {
					return api.Errorf(api.ErrConflict, "ip=%s is already used by %s (tap %s) on bridge %s; pick another address", b, p.domain, t, bridge)
				}
			}
		}
	}
	pt := port{domain: domain, bridge: bridge, mac: v.MAC, ips: ips}
	if managed && n.NAT {
		var fixed netip.Addr
		var v6 []netip.Addr
		for _, ip := range ips {
			if ip.Is4() && !fixed.IsValid() {
				fixed = ip
			} else if ip.Is6() {
				v6 = append(v6, ip)
			} else {
				return api.Errorf(api.ErrInvalid, "ip=%s: a vif on NAT network %s has one IPv4 address (its lease)", ip, n.Name)
			}
		}
		l, err := m.reserve(ctx, n, domain, v.MAC, fixed)
		if err != nil {
			return err
		}
		pt.network, pt.dhcp = n.Name, true
		pt.ips = append([]netip.Addr{netip.MustParseAddr(l.IP)}, v6...)
	}
	m.ports[tap] = pt
	if err := m.applyLocked(); err != nil {
		delete(m.ports, tap)
		return api.Errorf(api.ErrInvalid, "filtering %s: %v", tap, err)
	}
	return nil
}

// unplug forgets a vif whose tap is gone; its lease, if any, is kept for
// leaseTime so the domain gets the address back if it is created again.
func (m *Manager) unplug(tap string) {
	m.fw.Lock()
	defer m.fw.Unlock()
	p, ok := m.ports[tap]
	if !ok {
		return
	}
	delete(m.ports, tap)
	if p.network != "" {
		if l, ok := m.leases[p.network][p.mac]; ok {
			l.Expires = time.Now().Add(leaseTime)
			m.putLease(context.Background(), l)
		}
	}
	if err := m.applyLocked(); err != nil {
		m.log.Error("removing the filter of a vif", "tap", tap, "err", err)
	}
}

// Sync renders the filter for the first time, once the domain manager has
// plugged every vif it re-attached after a restart.
func (m *Manager) Sync() error {
	m.fw.Lock()
	defer m.fw.Unlock()
	m.ready = true
	return m.applyLocked()
}

func (m *Manager) apply() error {
	m.fw.Lock()
	defer m.fw.Unlock()
	return m.applyLocked()
}

// applyLocked swaps the kernel's ringfence tables for what the ports and
// NAT networks need now. Caller holds fw.
func (m *Manager) applyLocked() error {
	if !m.ready {
		return nil
	}
	var filters []network.PortFilter
	for tap, p := range m.ports {
		if len(p.ips) > 0 {
			filters = append(filters, network.PortFilter{Tap: tap, MAC: p.mac, IPs: p.ips, DHCP: p.dhcp})
		}
	}
	var nats []network.NATNet
	m.cacheMu.RLock()
	for _, n := range m.byName {
		if s, err := netip.ParsePrefix(n.Subnet); err == nil && n.NAT {
			nats = append(nats, network.NATNet{Bridge: n.Bridge, Subnet: s})
		}
	}
	m.cacheMu.RUnlock()
	if len(filters) == 0 && len(nats) == 0 {
		// A host that never uses filtering needs no nft binary.
		if _, err := exec.LookPath("nft"); err != nil {
			return nil
		}
	}
	rs, err := network.Ruleset(filters, nats)
	if err != nil {
		return fmt.Errorf("rendering the firewall: %w", err)
	}
	return network.ApplyRuleset(rs)
}

// Addresses returns the addresses a running vif is filtered to (its lease
// on a NAT network), for network-list.
func (m *Manager) Addresses(tap string) []string {
	m.fw.Lock()
	defer m.fw.Unlock()
	var out []string
	for _, ip := range m.ports[tap].ips {
		out = append(out, ip.String())
	}
	return out
}
