package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Net is the test cluster's network: host namespaces joined by veth
// links to a bridge in a switch namespace, host i at 10.77.0.i/24. A
// host's link can be cut (set down) or cut one way (an nft drop).
type Net struct {
	Prefix string
	Switch string
	Hosts  []string // the hosts' namespaces, host 1 first
}

// Subnet is the hosts' network.
const Subnet = "10.77.0.0/24"

// NewNet makes n host namespaces named PREFIX-h1..n and the switch
// PREFIX-sw. On an error what was made is removed.
func NewNet(prefix string, n int) (nt *Net, err error) {
	nt = &Net{Prefix: prefix, Switch: prefix + "-sw"}
	defer func() {
		if err != nil {
			nt.Remove()
		}
	}()
	if err := sh("ip", "netns", "add", nt.Switch); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"ip", "-n", nt.Switch, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", nt.Switch, "link", "set", "br0", "up"},
	}
	for i := 1; i <= n; i++ {
		ns := fmt.Sprintf("%s-h%d", prefix, i)
		if err := sh("ip", "netns", "add", ns); err != nil {
			return nil, err
		}
		nt.Hosts = append(nt.Hosts, ns)
		// The pair is made in the switch and one end moved into the host.
		sw := fmt.Sprintf("sw%d", i)
		steps = append(steps,
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
			[]string{"ip", "-n", nt.Switch, "link", "add", sw, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"ip", "-n", nt.Switch, "link", "set", sw, "master", "br0", "up"},
			[]string{"ip", "-n", ns, "addr", "add", nt.Addr(i) + "/24", "dev", "eth0"},
			[]string{"ip", "-n", ns, "link", "set", "eth0", "up"})
	}
	for _, s := range steps {
		if err := sh(s...); err != nil {
			return nil, err
		}
	}
	return nt, nil
}

// Addr is host i's address (1-based).
func (nt *Net) Addr(i int) string { return fmt.Sprintf("10.77.0.%d", i) }

// Remove deletes every namespace (their links go with them).
func (nt *Net) Remove() {
	for _, ns := range append([]string{nt.Switch}, nt.Hosts...) {
		exec.Command("ip", "netns", "del", ns).Run()
	}
}

// Cut sets host i's link down on the switch side: it hears nothing and
// is heard by nobody, as a pulled cable.
func (nt *Net) Cut(i int) error {
	return sh("ip", "-n", nt.Switch, "link", "set", fmt.Sprintf("sw%d", i), "down")
}

// Heal undoes Cut and CutOneWay.
func (nt *Net) Heal(i int) error {
	err := sh("ip", "-n", nt.Switch, "link", "set", fmt.Sprintf("sw%d", i), "up")
	exec.Command("nsenter", "--net=/run/netns/"+nt.Hosts[i-1], "nft", "delete", "table", "inet", "rfcut").Run()
	return err
}

// CutOneWay drops what host i receives from the other hosts (inbound)
// or what it sends them (!inbound), in its own namespace: its packets
// still leave (or arrive) the other way, the asymmetric failure.
func (nt *Net) CutOneWay(i int, inbound bool) error {
	hook, match := "output", "ip daddr"
	if inbound {
		hook, match = "input", "ip saddr"
	}
	rules := fmt.Sprintf(`table inet rfcut {
	chain c {
		type filter hook %s priority 0; policy accept;
		%s %s %s != %s drop
	}
}
`, hook, match, Subnet, match, nt.Addr(i))
	return nftIn(nt.Hosts[i-1], rules)
}

// nftIn loads nft rules in namespace ns.
func nftIn(ns, rules string) error {
	cmd := exec.Command("nsenter", "--net=/run/netns/"+ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func sh(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Prefix makes a namespace prefix unique to this process and seq (the
// kernel's names are limited to 15 characters with the suffixes).
func Prefix(tag string, seq int) string {
	return fmt.Sprintf("%s%d-%d", tag, os.Getpid()%100000, seq)
}
