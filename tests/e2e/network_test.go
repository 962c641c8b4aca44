package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// A vif with bridge= gets a tap named like Xen's backend, enslaved to that
// bridge, and the guest is reachable through it. Everything happens in the
// test's own network namespace.
func TestBridgedVif(t *testing.T) {
	e := NewEnv(t)
	e.hostBridge("xenbr0", "10.77.0.1/24")

	c := e.Boot("net1", `vif = [ 'mac=00:16:3e:01:02:03,bridge=xenbr0,rate=8Mb/s' ]`)
	d := e.Domain("net1")
	tap := "vif" + itoa(d.ID) + ".0"
	if len(d.Taps) != 1 || d.Taps[0] != tap {
		t.Fatalf("taps %v, want [%s]", d.Taps, tap)
	}
	link := mustRun(t, "ip", "-n", e.Netns, "-o", "link", "show", tap)
	if !strings.Contains(link, "master xenbr0") {
		t.Fatalf("tap not on the bridge: %s", link)
	}
	// rate= is enforced on the tap both ways: a token bucket on its egress
	// (to the guest) and, for what the guest sends, one on the IFB its
	// ingress is redirected to.
	ifb := "ifb" + strings.TrimPrefix(tap, "vif")
	for _, dev := range []string{tap, ifb} {
		if q := mustRun(t, "ip", "netns", "exec", e.Netns, "tc", "qdisc", "show", "dev", dev); !strings.Contains(q, "tbf") || !strings.Contains(q, "rate 8Mbit") {
			t.Fatalf("no 8Mbit token bucket on %s:\n%s", dev, q)
		}
	}
	if f := mustRun(t, "ip", "netns", "exec", e.Netns, "tc", "filter", "show", "dev", tap, "ingress"); !strings.Contains(f, "mirred") || !strings.Contains(f, ifb) {
		t.Fatalf("%s's ingress is not redirected to %s:\n%s", tap, ifb, f)
	}
	off := len(c.Output())
	c.Send("cat /sys/class/net/eth0/address; ip addr add 10.77.0.2/24 dev eth0")
	c.WaitFor("00:16:3e:01:02:03", off, 10*time.Second)
	var out string
	e.Await("the guest to answer ping", 30*time.Second, func() bool {
		b, err := runOut("ip", "netns", "exec", e.Netns, "ping", "-c", "1", "-W", "1", "10.77.0.2")
		out = b
		return err == nil
	})
	_ = out
	e.MustRF("destroy", "net1")
	if strings.Contains(e.Links(), tap) || strings.Contains(e.Links(), ifb) {
		t.Fatalf("tap %s or %s left after destroy:\n%s", tap, ifb, e.Links())
	}
}

// TestManagedNetwork: `network create` makes the bridge and puts the
// uplink on it; a guest whose vif names the network shares the uplink's
// segment (it reaches a host in another namespace behind the uplink);
// refusals for bad input and for deleting a network in use; delete
// removes what create made.
func TestManagedNetwork(t *testing.T) {
	e := NewEnv(t)
	outside := fmt.Sprintf("rfout%d", os.Getpid())
	mustRun(t, "ip", "netns", "add", outside)
	t.Cleanup(func() { runOut("ip", "netns", "del", outside) })
	mustRun(t, "ip", "-n", e.Netns, "link", "add", "up0", "type", "veth", "peer", "name", "up0p", "netns", outside)
	mustRun(t, "ip", "-n", outside, "addr", "add", "10.78.0.1/24", "dev", "up0p")
	mustRun(t, "ip", "-n", outside, "link", "set", "up0p", "up")

	e.MustRF("network", "create", "lan", "--bridge", "rfbr1", "--uplink", "up0")
	var nets []api.Network
	json.Unmarshal([]byte(e.MustRF("network", "list", "--json")), &nets)
	if len(nets) != 1 || nets[0].Bridge != "rfbr1" || !nets[0].Created || strings.Join(nets[0].Ports, ",") != "up0" {
		t.Fatalf("networks: %+v", nets)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "lan"}, "already exists"},
		{[]string{"network", "create", "wan", "--uplink", "nosuch0"}, `uplink "nosuch0" does not exist`},
		{[]string{"network", "create", "wan", "--bridge", "rfbr2", "--uplink", "up0"}, "already part of rfbr1"},
		{[]string{"network", "create", "wan", "--bridge", "a-very-long-bridge-name"}, "1-15 letters"},
		{[]string{"network", "create", "../x"}, "is not a valid"},
		{[]string{"network", "delete", "nope"}, "no network named"},
	} {
		if r := e.RF(c.args...); r.Code == 0 || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("%v: %+v, want %q", c.args, r, c.want)
		}
	}
	if strings.Contains(e.Links(), "rfbr2") || strings.Contains(e.Links(), "wan") {
		t.Fatalf("a refused create left a link:\n%s", e.Links())
	}

	c := e.Boot("onlan", `vif = [ 'mac=00:16:3e:0a:0b:0c,bridge=lan' ]`)
	tap := "vif" + itoa(e.Domain("onlan").ID) + ".0"
	if link := mustRun(t, "ip", "-n", e.Netns, "-o", "link", "show", tap); !strings.Contains(link, "master rfbr1") {
		t.Fatalf("tap not on the network's bridge: %s", link)
	}
	off := len(c.Output())
	c.Send("ip addr add 10.78.0.5/24 dev eth0; ping -c 3 -W 2 10.78.0.1 && echo reached-$((6*7))")
	c.WaitFor("reached-42", off, 30*time.Second)
	if r := e.RF("network", "delete", "lan"); r.Code == 0 || !strings.Contains(r.Stderr, "in use by onlan") {
		t.Fatalf("deleting a network in use: %+v", r)
	}
	e.MustRF("destroy", "onlan")
	e.MustRF("network", "delete", "lan")
	links := e.Links()
	if strings.Contains(links, "rfbr1") || strings.Contains(mustRun(t, "ip", "-n", e.Netns, "-o", "link", "show", "up0"), "master") {
		t.Fatalf("delete left the bridge or the uplink enslaved:\n%s", links)
	}
}

// TestNICHotplug: network-attach gives a running guest a NIC (its MAC,
// reachable over the bridge), network-detach takes it and its tap away;
// a MAC another domain has on the bridge is refused.
func TestNICHotplug(t *testing.T) {
	e := NewEnv(t)
	mustRun(t, "ip", "-n", e.Netns, "link", "add", "hpbr0", "type", "bridge")
	mustRun(t, "ip", "-n", e.Netns, "addr", "add", "10.79.0.1/24", "dev", "hpbr0")
	mustRun(t, "ip", "-n", e.Netns, "link", "set", "hpbr0", "up")
	c := e.Boot("plug", "hotplug_slots = 1")
	e.Boot("other", `vif = [ 'mac=00:16:3e:11:22:33,bridge=hpbr0' ]`)
	if r := e.RF("network-attach", "other", "bridge=hpbr0"); r.Code == 0 || !strings.Contains(r.Stderr, "hotplug_slots = 2") {
		t.Fatalf("attaching to a domain without hot-plug slots: %+v", r)
	}
	if r := e.RF("network-attach", "plug", "mac=00:16:3e:11:22:33,bridge=hpbr0"); r.Code == 0 || !strings.Contains(r.Stderr, "already used by domain other") {
		t.Fatalf("attaching a MAC in use on the bridge: %+v", r)
	}
	if r := e.RF("network-attach", "plug", "bridge=nosuchbr"); r.Code == 0 || !strings.Contains(r.Stderr, "does not exist") {
		t.Fatalf("attaching to a missing bridge: %+v", r)
	}
	e.MustRF("network-attach", "plug", "mac=00:16:3e:44:55:66,bridge=hpbr0")
	var vifs []api.NetworkDevice
	json.Unmarshal([]byte(e.MustRF("network-list", "plug", "--json")), &vifs)
	if len(vifs) != 1 || vifs[0].Tap == "" || vifs[0].Port == "" {
		t.Fatalf("network-list: %+v", vifs)
	}
	tap := vifs[0].Tap
	if link := mustRun(t, "ip", "-n", e.Netns, "-o", "link", "show", tap); !strings.Contains(link, "master hpbr0") {
		t.Fatalf("tap not on the bridge: %s", link)
	}
	has := `grep -l 00:16:3e:44:55:66 /sys/class/net/*/address 2>/dev/null | grep -q .`
	off := len(c.Output())
	c.Send("for i in $(seq 1 60); do " + has + " && break; sleep 0.5; done; " +
		"dev=$(basename $(dirname $(grep -l 00:16:3e:44:55:66 /sys/class/net/*/address))); ip link set $dev up; ip addr add 10.79.0.7/24 dev $dev; echo nic-$dev-up")
	c.WaitFor("-up", off, 40*time.Second)
	e.Await("the hot-plugged NIC to answer ping", 30*time.Second, func() bool {
		_, err := runOut("ip", "netns", "exec", e.Netns, "ping", "-c", "1", "-W", "1", "10.79.0.7")
		return err == nil
	})
	e.MustRF("network-detach", "plug", "00:16:3e:44:55:66")
	off = len(c.Output())
	c.Send(has + " && echo still-$((5*9)) || echo gone-$((5*9))")
	c.WaitFor("-45", off, 20*time.Second)
	if !strings.Contains(c.Output()[off:], "gone-45") {
		t.Fatalf("the NIC is still in the guest:\n%s", c.Output()[off:])
	}
	if strings.Contains(e.Links(), tap+":") || strings.Contains(e.Links(), tap+"@") {
		t.Fatalf("tap %s left after detach:\n%s", tap, e.Links())
	}
	if r := e.RF("network-detach", "other", "0"); r.Code == 0 || !strings.Contains(r.Stderr, "was there at boot") {
		t.Fatalf("detaching a boot-time vif: %+v", r)
	}
}
