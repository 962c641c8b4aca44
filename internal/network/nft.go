package network

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
)

// The daemon's packet filtering lives in two nftables tables, both named
// "ringfence": "bridge ringfence" (anti-spoofing on vif ports) and
// "ip ringfence" (masquerade and forwarding for NAT networks). They are
// rendered whole from the daemon's state and swapped in one nft
// transaction, so the kernel never holds half a ruleset and a restarted
// daemon simply renders the same text again. Nothing else on the host is
// touched.
const nftTable = "ringfence"

// PortFilter is what one vif's tap may send: frames from MAC only, and
// IPv4/ARP from IPs only (IPv6 only from IPs' v6 entries, when there are
// any). DHCP lets the guest ask for its lease before it has an address.
type PortFilter struct {
	Tap  string
	MAC  string
	IPs  []netip.Addr
	DHCP bool
}

// NATNet is a private bridge whose subnet is masqueraded out of the host.
type NATNet struct {
	Bridge string
	Subnet netip.Prefix
}

// Ruleset renders both tables. Every value has been validated by its
// owner (interface names, MACs, addresses); they are checked again here
// because this text reaches nft.
func Ruleset(ports []PortFilter, nats []NATNet) (string, error) {
	var b strings.Builder
	// "table X" then "delete table X": creating first makes the delete
	// valid when the table does not exist yet; all in one transaction.
	fmt.Fprintf(&b, "table bridge %s\ndelete table bridge %s\n", nftTable, nftTable)
	fmt.Fprintf(&b, "table ip %s\ndelete table ip %s\n", nftTable, nftTable)
	ports = append([]PortFilter(nil), ports...)
	sort.Slice(ports, func(i, j int) bool { return ports[i].Tap < ports[j].Tap })
	if len(ports) > 0 {
		fmt.Fprintf(&b, "table bridge %s {\n", nftTable)
		b.WriteString("\tchain prerouting {\n\t\ttype filter hook prerouting priority -200; policy accept;\n")
		for i, p := range ports {
			if err := CheckIfName("tap", p.Tap); err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "\t\tiifname %q jump port%d\n", p.Tap, i)
		}
		b.WriteString("\t}\n")
		for i, p := range ports {
			if _, err := parseMAC(p.MAC); err != nil {
				return "", fmt.Errorf("tap %s: %w", p.Tap, err)
			}
			var v4, v6 []string
			for _, ip := range p.IPs {
				if ip.Is4() {
					v4 = append(v4, ip.String())
				} else if ip.Is6() && !ip.Is4In6() {
					v6 = append(v6, ip.String())
				}
			}
			fmt.Fprintf(&b, "\tchain port%d {\n", i)
			fmt.Fprintf(&b, "\t\tcomment %q\n", p.Tap)
			fmt.Fprintf(&b, "\t\tether saddr != %s counter drop\n", p.MAC)
			fmt.Fprintf(&b, "\t\tarp saddr ether != %s counter drop\n", p.MAC)
			// 0.0.0.0 is an ARP probe (duplicate address detection).
			fmt.Fprintf(&b, "\t\tarp saddr ip != { %s } counter drop\n", strings.Join(append([]string{"0.0.0.0"}, v4...), ", "))
			if p.DHCP {
				b.WriteString("\t\tip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept\n")
			}
			fmt.Fprintf(&b, "\t\tip saddr != { %s } counter drop\n", joinOr(v4, "0.0.0.0"))
			if len(v6) > 0 {
				// Link-local and :: are how NDP and DAD work.
				fmt.Fprintf(&b, "\t\tip6 saddr != { ::, fe80::/10, %s } counter drop\n", strings.Join(v6, ", "))
			}
			b.WriteString("\t}\n")
		}
		b.WriteString("}\n")
	}
	if len(nats) > 0 {
		fmt.Fprintf(&b, "table ip %s {\n", nftTable)
		b.WriteString("\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
		for _, n := range nats {
			if err := CheckIfName("bridge", n.Bridge); err != nil {
				return "", err
			}
			s := n.Subnet.Masked().String()
			fmt.Fprintf(&b, "\t\tip saddr %s ip daddr != %s masquerade\n", s, s)
		}
		b.WriteString("\t}\n")
		// Guests may open connections out; nothing outside may open one
		// in (as on a home router). Traffic between guests on one bridge
		// reaches this hook only when br_netfilter is loaded (Docker
		// hosts), in and out on the bridge: it stays allowed.
		b.WriteString("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n")
		for _, n := range nats {
			fmt.Fprintf(&b, "\t\tiifname %q oifname %q accept\n", n.Bridge, n.Bridge)
			fmt.Fprintf(&b, "\t\toifname %q ct state established,related accept\n", n.Bridge)
			fmt.Fprintf(&b, "\t\toifname %q drop\n", n.Bridge)
		}
		b.WriteString("\t}\n}\n")
	}
	return b.String(), nil
}

func joinOr(s []string, none string) string {
	if len(s) == 0 {
		return none
	}
	return strings.Join(s, ", ")
}

// ApplyRuleset swaps the ringfence tables for ruleset in one transaction.
func ApplyRuleset(ruleset string) error {
	nft, err := exec.LookPath("nft")
	if err != nil {
		return fmt.Errorf("nft not found: anti-spoofing and NAT networks need nftables (apt-get install nftables)")
	}
	cmd := exec.Command(nft, "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft: %v: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

func parseMAC(s string) (net.HardwareAddr, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return nil, fmt.Errorf("MAC %q is not six hex pairs like 00:16:3e:12:34:56", s)
	}
	return hw, nil
}
