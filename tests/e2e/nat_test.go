package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// nft lists the ruleset of the env's namespace.
func (e *Env) nft() string {
	out, _ := runOut("ip", "netns", "exec", e.Netns, "nft", "list", "ruleset")
	return out
}

// TestNATNetwork: a NAT network gives its guests DHCP leases (a fixed one
// for ip=), answers DNS for their names and masquerades them out: a guest
// reaches a host in another namespace that has no route back to the
// private subnet. Overlapping subnets and taken or foreign addresses are
// refused with nothing made. Leases, taps and filters survive a daemon
// restart and DHCP still answers after it; delete removes the bridge, the
// rules and the leases.
func TestNATNetwork(t *testing.T) {
	e := NewEnv(t, "--vcpu-ratio", "4") // the refused creates must reach the network check
	outside := fmt.Sprintf("rfwan%d", os.Getpid())
	mustRun(t, "ip", "netns", "add", outside)
	t.Cleanup(func() { runOut("ip", "netns", "del", outside) })
	mustRun(t, "ip", "-n", e.Netns, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0p", "netns", outside)
	mustRun(t, "ip", "-n", e.Netns, "addr", "add", "192.0.2.2/24", "dev", "wan0")
	mustRun(t, "ip", "-n", e.Netns, "link", "set", "wan0", "up")
	mustRun(t, "ip", "-n", outside, "addr", "add", "192.0.2.1/24", "dev", "wan0p")
	mustRun(t, "ip", "-n", outside, "link", "set", "wan0p", "up")
	mustRun(t, "ip", "-n", outside, "link", "set", "lo", "up")

	e.MustRF("network", "create", "nat0", "--nat", "--subnet", "10.77.0.0/24")
	if a := mustRun(t, "ip", "-n", e.Netns, "-o", "addr", "show", "dev", "nat0"); !strings.Contains(a, "10.77.0.1/24") {
		t.Fatalf("the bridge has no gateway address: %s", a)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "nat1", "--nat", "--subnet", "10.77.0.0/16"}, "overlaps network nat0"},
		{[]string{"network", "create", "nat1", "--nat", "--subnet", "192.0.2.0/25"}, "overlaps address 192.0.2.2/24 on wan0"},
		{[]string{"network", "create", "nat1", "--nat", "--subnet", "10.78.0.1/24"}, "write 10.78.0.0/24"},
		{[]string{"network", "create", "nat1", "--nat", "--subnet", "10.78.0.0/8"}, "prefix length must be 16 to 29"},
		{[]string{"network", "create", "nat1", "--nat"}, "--nat needs --subnet"},
		{[]string{"network", "create", "nat1", "--nat", "--subnet", "10.78.0.0/24", "--uplink", "wan0"}, "NAT network has no uplink"},
		{[]string{"network", "leases", "nosuch"}, "no network named"},
	} {
		if r := e.RF(c.args...); r.Code == 0 || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("%v: %+v, want %q", c.args, r, c.want)
		}
	}
	if strings.Contains(e.Links(), "nat1") {
		t.Fatalf("a refused create left a bridge:\n%s", e.Links())
	}

	ca := e.Boot("nata", "vif = [ 'bridge=nat0' ]\nhotplug_slots = 1")
	ca.WaitFor("eth0 has 10.77.0.2", 0, 60*time.Second)
	cb := e.Boot("natb", `vif = [ 'bridge=nat0,ip=10.77.0.50' ]`)
	cb.WaitFor("eth0 has 10.77.0.50", 0, 60*time.Second)
	for _, c := range []struct{ name, vif, want string }{
		{"natc", "bridge=nat0,ip=10.77.0.50", "ip=10.77.0.50 is already used by natb"},
		{"natd", "bridge=nat0,ip=10.99.0.5", "not a guest address of network nat0"},
		{"nate", "bridge=nat0,ip=10.77.0.1", "10.77.0.1 is the gateway"},
	} {
		if r := e.RF("create", e.WriteConfig(c.name, "vif = [ '"+c.vif+"' ]")); r.Code == 0 || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("%s: %+v, want %q", c.name, r, c.want)
		}
	}
	if len(e.List()) != 2 || strings.Count(e.Links(), "vif") != 2 {
		t.Fatalf("a refused create left a domain or a tap:\n%v\n%s", e.List(), e.Links())
	}

	// Out through the masquerade: the outside has no route to 10.77/24,
	// so a reply only comes back if the source was rewritten.
	off := len(ca.Output())
	ca.Send("ping -c 2 -W 3 10.77.0.50 && echo peer-$((6*7)); ping -c 2 -W 3 192.0.2.1 && echo wan-$((6*7)); nslookup natb 10.77.0.1")
	ca.WaitFor("peer-42", off, 30*time.Second)
	ca.WaitFor("wan-42", off, 30*time.Second)
	ca.WaitFor("10.77.0.50", off, 15*time.Second)
	leases := func() map[string]api.Lease {
		var ls []api.Lease
		if err := json.Unmarshal([]byte(e.MustRF("network", "leases", "nat0", "--json")), &ls); err != nil {
			t.Fatal(err)
		}
		out := map[string]api.Lease{}
		for _, l := range ls {
			out[l.IP] = l
		}
		return out
	}
	ls := leases()
	if len(ls) != 2 || ls["10.77.0.2"].Domain != "nata" || !ls["10.77.0.2"].Active || ls["10.77.0.50"].Domain != "natb" || !ls["10.77.0.50"].Fixed {
		t.Fatalf("leases: %+v", ls)
	}
	if out := e.MustRF("network-list", "nata"); !strings.Contains(out, "10.77.0.2") {
		t.Fatalf("network-list does not show the lease:\n%s", out)
	}
	// A NIC plugged in later gets its lease and its filter too.
	e.MustRF("network-attach", "nata", "bridge=nat0")
	off = len(ca.Output())
	ca.Send("ip link set eth1 up; udhcpc -i eth1 -q -n -t 5 -s /etc/udhcpc.script >/dev/null 2>&1")
	ca.WaitFor("eth1 has 10.77.0.3", off, 60*time.Second)
	if r := e.nft(); strings.Count(r, `iifname "vif`) != 3 {
		t.Fatalf("want 3 filtered vifs:\n%s", r)
	}
	e.MustRF("network-detach", "nata", "1")
	if r := e.nft(); strings.Count(r, `iifname "vif`) != 2 {
		t.Fatalf("the detached vif's filter stayed:\n%s", r)
	}
	ls = leases()
	rules := e.nft()
	for _, w := range []string{"masquerade", `iifname "vif`, "10.77.0.50"} {
		if !strings.Contains(rules, w) {
			t.Fatalf("ruleset lacks %q:\n%s", w, rules)
		}
	}

	// A restart keeps taps, leases and rules, and DHCP answers again.
	links := e.Links()
	e.StopDaemon()
	e.StartDaemon()
	same := func(a, b api.Lease) bool { // the expiry moves on: a running vif's lease is renewed
		return a.MAC == b.MAC && a.Domain == b.Domain && a.Fixed == b.Fixed && a.Active == b.Active
	}
	if got := leases(); len(got) != 3 || !same(got["10.77.0.2"], ls["10.77.0.2"]) || !same(got["10.77.0.50"], ls["10.77.0.50"]) || got["10.77.0.3"].Active {
		t.Fatalf("leases after restart: %+v, before %+v", got, ls)
	}
	for _, tap := range regexp.MustCompile(`vif\d+\.\d+`).FindAllString(links, -1) {
		if !strings.Contains(e.Links(), tap) {
			t.Fatalf("tap %s gone after restart", tap)
		}
	}
	if r := e.nft(); !strings.Contains(r, "10.77.0.50") || !strings.Contains(r, "masquerade") {
		t.Fatalf("rules after restart:\n%s", r)
	}
	ca = e.Console("nata") // the old one ended with the daemon
	off = len(ca.Output())
	ca.Send("udhcpc -i eth0 -q -n -t 5 -s /etc/udhcpc.script >/dev/null 2>&1; ping -c 1 -W 3 192.0.2.1 && echo again-$((6*7))")
	ca.WaitFor("eth0 has 10.77.0.2", off, 30*time.Second)
	ca.WaitFor("again-42", off, 30*time.Second)

	if r := e.RF("network", "delete", "nat0"); r.Code == 0 || !strings.Contains(r.Stderr, "in use by") {
		t.Fatalf("deleting a network in use: %+v", r)
	}
	e.MustRF("destroy", "nata")
	e.MustRF("destroy", "natb")
	if r := e.nft(); strings.Contains(r, `iifname "vif`) || !strings.Contains(r, "masquerade") {
		t.Fatalf("after destroy the vif filters should be gone and NAT stay:\n%s", r)
	}
	if ls := leases(); ls["10.77.0.2"].Active || ls["10.77.0.2"].Domain != "nata" {
		t.Fatalf("a lease should outlive its domain, inactive: %+v", ls)
	}
	e.MustRF("network", "delete", "nat0")
	if r := e.nft(); strings.Contains(r, "ringfence") {
		t.Fatalf("delete left rules:\n%s", r)
	}
	if strings.Contains(e.Links(), "nat0") {
		t.Fatalf("delete left the bridge:\n%s", e.Links())
	}
}

// nftCounter sums the packets counted by the rules of tap's chain that
// contain match.
func nftCounter(t *testing.T, e *Env, tap, match string) int {
	t.Helper()
	rules := e.nft()
	i := strings.Index(rules, fmt.Sprintf("comment %q", tap))
	if i < 0 {
		t.Fatalf("no chain for %s:\n%s", tap, rules)
	}
	chain := rules[i:]
	if j := strings.Index(chain, "\n\t}"); j > 0 { // the chain's end, not a set's
		chain = chain[:j]
	}
	n := 0
	for _, line := range strings.Split(chain, "\n") {
		if strings.Contains(line, match) {
			if m := regexp.MustCompile(`counter packets (\d+)`).FindStringSubmatch(line); m != nil {
				k, _ := strconv.Atoi(m[1])
				n += k
			}
		}
	}
	return n
}

// dropped runs cmd (a forged send that must fail: it echoes marker then)
// in the guest and checks tap's filter rules containing rule counted at
// least min more drops.
func dropped(t *testing.T, e *Env, c *Console, tap, rule, cmd, marker string, min int) {
	t.Helper()
	before := nftCounter(t, e, tap, rule)
	off := len(c.Output())
	c.Send(cmd)
	c.WaitFor(marker, off, 30*time.Second)
	if after := nftCounter(t, e, tap, rule); after < before+min {
		t.Fatalf("the %q rule counted %d drops, want at least %d more than %d", rule, after, min, before)
	}
}

// TestAntiSpoof: a vif with ip= may send only from its MAC and addresses.
// Two guests on one bridge ping each other and the host; a guest that
// forges its source IP (v4, or v6 when ip= lists v6), or its MAC, gets
// nothing through (the host never answers and the filter counts the drops)
// while its honest traffic does.
func TestAntiSpoof(t *testing.T) {
	e := NewEnv(t, "--vcpu-ratio", "4")
	mustRun(t, "ip", "-n", e.Netns, "link", "add", "sbr0", "type", "bridge")
	mustRun(t, "ip", "-n", e.Netns, "addr", "add", "10.80.0.1/24", "dev", "sbr0")
	mustRun(t, "ip", "-n", e.Netns, "link", "set", "sbr0", "up")
	mustRun(t, "ip", "-n", e.Netns, "addr", "add", "2001:db8:80::1/64", "dev", "sbr0", "nodad")
	cg := e.Boot("honest", `vif = [ 'mac=00:16:3e:aa:00:01,bridge=sbr0,ip=10.80.0.5 2001:db8:80::5' ]`)
	ch := e.Boot("peer", `vif = [ 'mac=00:16:3e:aa:00:02,bridge=sbr0,ip=10.80.0.6' ]`)
	tap := "vif" + itoa(e.Domain("honest").ID) + ".0"
	off := len(ch.Output())
	ch.Send("ip addr add 10.80.0.6/24 dev eth0; echo peer-up")
	ch.WaitFor("peer-up", off, 10*time.Second)

	off = len(cg.Output())
	cg.Send("ip addr add 10.80.0.5/24 dev eth0; ping -c 2 -W 3 10.80.0.6 && ping -c 1 -W 3 10.80.0.1 && echo honest-$((6*7))")
	cg.WaitFor("honest-42", off, 30*time.Second)

	// Forged source address: the neighbour's MAC is cached, so only the
	// IPv4 rule stands between the forged packet and the host.
	dropped(t, e, cg, tap, "ip saddr", "ip addr add 10.80.0.9/24 dev eth0; ping -c 2 -W 2 -I 10.80.0.9 10.80.0.1 >/dev/null || echo forged-$((6*7))-blocked", "forged-42-blocked", 2)
	off = len(cg.Output())
	cg.Send("ip addr del 10.80.0.9/24 dev eth0; ping -c 1 -W 3 -I 10.80.0.5 10.80.0.1 && echo honest-again-$((6*7))")
	cg.WaitFor("honest-again-42", off, 30*time.Second)

	// Forged MAC.
	dropped(t, e, cg, tap, "ether saddr", "ip link set eth0 address 00:16:3e:aa:00:66; ping -c 2 -W 2 10.80.0.6 >/dev/null || echo mac-$((6*7))-blocked; ip link set eth0 address 00:16:3e:aa:00:01", "mac-42-blocked", 1)
	off = len(cg.Output())
	cg.Send("ping -c 2 -W 3 10.80.0.6 && echo mac-back-$((6*7))")
	cg.WaitFor("mac-back-42", off, 30*time.Second)

	// IPv6, listed in ip=: its own address passes, a forged one does not.
	// (busybox ip has no nodad: duplicate address detection is turned off.)
	off = len(cg.Output())
	cg.Send("echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad; ip -6 addr add 2001:db8:80::5/64 dev eth0; ip -6 addr add 2001:db8:80::9/64 dev eth0; sleep 1; ping -6 -c 2 -W 3 -I 2001:db8:80::5 2001:db8:80::1 && echo v6-$((6*7))")
	cg.WaitFor("v6-42", off, 30*time.Second)
	dropped(t, e, cg, tap, "ip6 saddr", "ping -6 -c 2 -W 2 -I 2001:db8:80::9 2001:db8:80::1 >/dev/null || echo v6forged-$((6*7))-blocked", "v6forged-42-blocked", 2)

	// The neighbour's address is taken on this bridge.
	if r := e.RF("create", e.WriteConfig("thief", `vif = [ 'bridge=sbr0,ip=10.80.0.6' ]`)); r.Code == 0 || !strings.Contains(r.Stderr, "ip=10.80.0.6 is already used by peer") {
		t.Fatalf("taking a neighbour's ip=: %+v", r)
	}
	e.MustRF("destroy", "honest")
	e.MustRF("destroy", "peer")
	if r := e.nft(); strings.Contains(r, "iifname") {
		t.Fatalf("filters left after destroy:\n%s", r)
	}
}
