package netmgr

import (
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"github.com/ringfence/ringfence/internal/api"
)

// dhcpServer answers DHCP on a NAT network's bridge. The daemon already
// chose every vif's address when its domain started (reserve), so the
// server only tells a MAC what it has: it never allocates, and a MAC
// without a lease gets no answer.
type dhcpServer struct {
	srv *server4.Server
}

func (s *dhcpServer) close() { s.srv.Close() }

func (m *Manager) startDHCP(n api.Network, subnet netip.Prefix) (*dhcpServer, error) {
	gw := net.IP(subnet.Addr().Next().AsSlice())
	mask := net.CIDRMask(subnet.Bits(), 32)
	handler := func(conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4) {
		if req.OpCode != dhcpv4.OpcodeBootRequest {
			return
		}
		mac := req.ClientHWAddr.String()
		l, ok := m.lookupLease(n.Name, mac)
		if !ok {
			m.log.Debug("dhcp: no lease for this MAC; ignored", "network", n.Name, "mac", mac)
			return
		}
		ip := net.ParseIP(l.IP).To4()
		var typ dhcpv4.MessageType
		switch req.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			typ = dhcpv4.MessageTypeOffer
		case dhcpv4.MessageTypeRequest:
			want := req.RequestedIPAddress()
			if want == nil || want.IsUnspecified() {
				want = req.ClientIPAddr
			}
			sid := req.ServerIdentifier()
			if sid != nil && !sid.Equal(gw) {
				return // the guest chose another server
			}
			typ = dhcpv4.MessageTypeAck
			if want != nil && !want.IsUnspecified() && !want.Equal(ip) {
				typ = dhcpv4.MessageTypeNak // it asks for an address that is not its own
			}
		default:
			return
		}
		mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(typ), dhcpv4.WithServerIP(gw),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(gw))}
		if typ != dhcpv4.MessageTypeNak {
			mods = append(mods, dhcpv4.WithYourIP(ip), dhcpv4.WithNetmask(mask), dhcpv4.WithRouter(gw),
				dhcpv4.WithDNS(gw), dhcpv4.WithLeaseTime(uint32(leaseTime.Seconds())))
			if l.Domain != "" {
				mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(l.Domain)))
			}
		}
		resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
		if err != nil {
			return
		}
		if typ == dhcpv4.MessageTypeAck {
			m.renew(n.Name, mac)
		}
		// The guest has no address yet: answer by broadcast on the bridge.
		dst := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
		if u, ok := peer.(*net.UDPAddr); ok && !u.IP.Equal(net.IPv4bcast) && !req.ClientIPAddr.IsUnspecified() {
			dst = u
		}
		if _, err := conn.WriteTo(resp.ToBytes(), dst); err != nil {
			m.log.Warn("dhcp: reply", "network", n.Name, "mac", mac, "err", err)
		}
	}
	srv, err := server4.NewServer(n.Bridge, &net.UDPAddr{Port: dhcpv4.ServerPort}, handler)
	if err != nil {
		return nil, err
	}
	go srv.Serve()
	return &dhcpServer{srv: srv}, nil
}
