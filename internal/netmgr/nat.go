package netmgr

import (
	"fmt"
	"net/netip"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/network"
)

// parseSubnet reads --subnet: an IPv4 network in CIDR form, big enough for
// a few guests and small enough to scan for a free address.
func parseSubnet(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("a NAT network needs --subnet, e.g. --subnet 10.77.0.0/24")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return p, fmt.Errorf("subnet %q is not an IPv4 network like 10.77.0.0/24", s)
	}
	if p.Bits() < 16 || p.Bits() > 29 {
		return p, fmt.Errorf("subnet %s: the prefix length must be 16 to 29 (a /24 holds 253 guests)", s)
	}
	if p.Masked() != p {
		return p, fmt.Errorf("subnet %s has host bits set; write %s", s, p.Masked())
	}
	return p, nil
}

// checkOverlap refuses a subnet another network or the host already uses:
// guests would shadow real hosts, and replies would go the wrong way.
func (m *Manager) checkOverlap(p netip.Prefix) error {
	for _, n := range m.List() {
		if o, err := netip.ParsePrefix(n.Subnet); err == nil && o.Overlaps(p) {
			return api.Errorf(api.ErrConflict, "subnet %s overlaps network %s (%s); pick another range", p, n.Name, n.Subnet)
		}
	}
	if what := network.Overlapping(p); what != "" {
		return api.Errorf(api.ErrConflict, "subnet %s overlaps %s on this host; pick another range", p, what)
	}
	return nil
}

// services are a NAT network's DHCP and DNS servers.
type services struct {
	dhcp *dhcpServer
	dns  *dnsServer
}

func (s *services) close() {
	if s.dhcp != nil {
		s.dhcp.close()
	}
	if s.dns != nil {
		s.dns.close()
	}
}

// startNAT gives the bridge its gateway address and starts DHCP and DNS on
// it. The masquerade rule comes with the next apply.
func (m *Manager) startNAT(n api.Network) error {
	p, err := netip.ParsePrefix(n.Subnet)
	if err != nil {
		return err
	}
	gw := netip.PrefixFrom(p.Addr().Next(), p.Bits())
	if err := network.AddAddr(n.Bridge, gw); err != nil {
		return err
	}
	if err := network.EnableForwarding(); err != nil {
		return err
	}
	s := &services{}
	if s.dhcp, err = m.startDHCP(n, p); err != nil {
		return fmt.Errorf("starting DHCP on %s: %w", n.Bridge, err)
	}
	if s.dns, err = m.startDNS(n, gw.Addr()); err != nil {
		s.close()
		return fmt.Errorf("starting DNS on %s: %w", gw.Addr(), err)
	}
	m.fw.Lock()
	m.svcs[n.Name] = s
	m.fw.Unlock()
	return nil
}

// stopNAT undoes startNAT (the bridge itself is the caller's).
func (m *Manager) stopNAT(n api.Network) {
	m.fw.Lock()
	if s := m.svcs[n.Name]; s != nil {
		s.close()
		delete(m.svcs, n.Name)
	}
	m.fw.Unlock()
	if p, err := netip.ParsePrefix(n.Subnet); err == nil {
		network.DelAddr(n.Bridge, netip.PrefixFrom(p.Addr().Next(), p.Bits()))
	}
}
