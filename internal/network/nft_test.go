package network

import (
	"net/netip"
	"strings"
	"testing"
)

func TestRuleset(t *testing.T) {
	a := netip.MustParseAddr
	cases := []struct {
		name    string
		ports   []PortFilter
		nats    []NATNet
		want    []string // lines that must be there
		notWant []string
		err     string
	}{
		{name: "empty removes both tables", want: []string{"delete table bridge ringfence", "delete table ip ringfence"},
			notWant: []string{"chain"}},
		{name: "v4 port", ports: []PortFilter{{Tap: "vif3.0", MAC: "00:16:3e:00:00:01", IPs: []netip.Addr{a("10.0.0.5")}}},
			want: []string{`iifname "vif3.0" jump port0`, "ether saddr != 00:16:3e:00:00:01 counter drop",
				"arp saddr ip != { 0.0.0.0, 10.0.0.5 } counter drop", "ip saddr != { 10.0.0.5 } counter drop"},
			notWant: []string{"ip6 saddr", "udp dport 67"}},
		{name: "v6 listed and DHCP", ports: []PortFilter{{Tap: "vif3.0", MAC: "00:16:3e:00:00:01", IPs: []netip.Addr{a("10.0.0.5"), a("2001:db8::5")}, DHCP: true}},
			want: []string{"ip6 saddr != { ::, fe80::/10, 2001:db8::5 } counter drop", "udp dport 67 accept"}},
		{name: "nat", nats: []NATNet{{Bridge: "rfnat0", Subnet: netip.MustParsePrefix("10.77.0.0/24")}},
			want:    []string{"ip saddr 10.77.0.0/24 ip daddr != 10.77.0.0/24 masquerade", `oifname "rfnat0" ct state established,related accept`},
			notWant: []string{"table bridge ringfence {"}},
		{name: "hostile tap name", ports: []PortFilter{{Tap: `x" drop`, MAC: "00:16:3e:00:00:01", IPs: []netip.Addr{a("10.0.0.5")}}}, err: "tap"},
		{name: "bad mac", ports: []PortFilter{{Tap: "vif1.0", MAC: "zz", IPs: []netip.Addr{a("10.0.0.5")}}}, err: "MAC"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Ruleset(c.ports, c.nats)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in\n%s", w, got)
				}
			}
			for _, w := range c.notWant {
				if strings.Contains(got, w) {
					t.Errorf("unexpected %q in\n%s", w, got)
				}
			}
		})
	}
}
