package netmgr

import (
	"bufio"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/ringfence/ringfence/internal/api"
)

// dnsServer answers a NAT network's guests at the gateway: the names of
// the domains on the network (NAME or NAME.NETWORK) from their leases,
// everything else relayed to the host's resolvers.
type dnsServer struct {
	conn      net.PacketConn
	upstreams []string
}

func (s *dnsServer) close() { s.conn.Close() }

func (m *Manager) startDNS(n api.Network, gw netip.Addr) (*dnsServer, error) {
	conn, err := net.ListenPacket("udp4", netip.AddrPortFrom(gw, 53).String())
	if err != nil {
		return nil, err
	}
	s := &dnsServer{conn: conn, upstreams: upstreams("/etc/resolv.conf", gw)}
	go func() {
		buf := make([]byte, 1500)
		for {
			k, peer, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			q := append([]byte(nil), buf[:k]...)
			go func() {
				if resp := s.answer(q, func(name string) (netip.Addr, bool) { return m.resolve(n.Name, name) }, n.Name); resp != nil {
					conn.WriteTo(resp, peer)
				}
			}()
		}
	}()
	return s, nil
}

// answer builds the reply to one query, or nil to stay silent.
func (s *dnsServer) answer(q []byte, lookup func(string) (netip.Addr, bool), netName string) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return reply(h, qs, dnsmessage.RCodeFormatError, nil)
	}
	name := strings.TrimSuffix(strings.ToLower(qs[0].Name.String()), ".")
	name = strings.TrimSuffix(name, "."+strings.ToLower(netName))
	if !strings.Contains(name, ".") {
		ip, ok := lookup(name)
		if !ok {
			return reply(h, qs, dnsmessage.RCodeNameError, nil)
		}
		if qs[0].Type != dnsmessage.TypeA || qs[0].Class != dnsmessage.ClassINET {
			return reply(h, qs, dnsmessage.RCodeSuccess, nil) // the name exists, without that record
		}
		return reply(h, qs, dnsmessage.RCodeSuccess, &ip)
	}
	for _, up := range s.upstreams {
		if resp := relay(up, q); resp != nil {
			return resp
		}
	}
	return reply(h, qs, dnsmessage.RCodeServerFailure, nil)
}

func reply(h dnsmessage.Header, qs []dnsmessage.Question, rc dnsmessage.RCode, ip *netip.Addr) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: ip != nil,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: rc})
	b.EnableCompression()
	b.StartQuestions()
	for _, q := range qs {
		b.Question(q)
	}
	if ip != nil && len(qs) == 1 {
		b.StartAnswers()
		b.AResource(dnsmessage.ResourceHeader{Name: qs[0].Name, Class: dnsmessage.ClassINET, TTL: 60},
			dnsmessage.AResource{A: ip.As4()})
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// relay asks one upstream resolver.
func relay(up string, q []byte) []byte {
	c, err := net.DialTimeout("udp", up, time.Second)
	if err != nil {
		return nil
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(q); err != nil {
		return nil
	}
	buf := make([]byte, 4096)
	k, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:k]
}

// upstreams reads the host's resolvers (never our own gateway).
func upstreams(path string, self netip.Addr) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "nameserver" {
			if a, err := netip.ParseAddr(fs[1]); err == nil && a != self {
				out = append(out, netip.AddrPortFrom(a, 53).String())
			}
		}
	}
	return out
}
