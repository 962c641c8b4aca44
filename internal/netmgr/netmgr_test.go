package netmgr

import (
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func TestParseSubnet(t *testing.T) {
	for _, c := range []struct{ in, err string }{
		{"10.77.0.0/24", ""},
		{"172.16.0.0/16", ""},
		{"", "needs --subnet"},
		{"10.77.0.1/24", "write 10.77.0.0/24"},
		{"10.0.0.0/8", "16 to 29"},
		{"10.0.0.0/30", "16 to 29"},
		{"fd00::/64", "not an IPv4 network"},
		{"banana", "not an IPv4 network"},
	} {
		_, err := parseSubnet(c.in)
		if (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: %v, want %q", c.in, err, c.err)
		}
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{"10.77.0.0/24": "10.77.0.255", "10.77.0.8/29": "10.77.0.15", "172.16.0.0/16": "172.16.255.255"} {
		if got := lastAddr(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

// The DNS server answers a domain's name (bare or under the network) from
// the leases, says NXDOMAIN for an unknown bare name, and has no upstream
// here to relay a dotted name to.
func TestDNSAnswer(t *testing.T) {
	s := &dnsServer{}
	lookup := func(n string) (netip.Addr, bool) {
		if n == "web01" {
			return netip.MustParseAddr("10.77.0.9"), true
		}
		return netip.Addr{}, false
	}
	for _, c := range []struct {
		q     string
		typ   dnsmessage.Type
		rcode dnsmessage.RCode
		ip    string
	}{
		{"web01.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "10.77.0.9"},
		{"WEB01.nat0.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "10.77.0.9"},
		{"web01.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, ""},
		{"nobody.", dnsmessage.TypeA, dnsmessage.RCodeNameError, ""},
		{"example.org.", dnsmessage.TypeA, dnsmessage.RCodeServerFailure, ""},
	} {
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
		b.StartQuestions()
		b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(c.q), Type: c.typ, Class: dnsmessage.ClassINET})
		q, _ := b.Finish()
		var p dnsmessage.Parser
		h, err := p.Start(s.answer(q, lookup, "nat0"))
		if err != nil {
			t.Fatalf("%s: %v", c.q, err)
		}
		p.SkipAllQuestions()
		ans, _ := p.AllAnswers()
		got := ""
		if len(ans) == 1 {
			a := ans[0].Body.(*dnsmessage.AResource).A
			got = netip.AddrFrom4(a).String()
		}
		if h.ID != 7 || !h.Response || h.RCode != c.rcode || got != c.ip {
			t.Errorf("%s %v: id %d rcode %v answer %q, want %v %q", c.q, c.typ, h.ID, h.RCode, got, c.rcode, c.ip)
		}
	}
}
