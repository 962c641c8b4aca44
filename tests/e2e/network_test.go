package e2e

import (
	"strings"
	"testing"
	"time"
)

// A vif with bridge= gets a tap named like Xen's backend, enslaved to that
// bridge, and the guest is reachable through it. Everything happens in the
// test's own network namespace.
func TestBridgedVif(t *testing.T) {
	e := NewEnv(t)
	mustRun(t, "ip", "-n", e.Netns, "link", "add", "xenbr0", "type", "bridge")
	mustRun(t, "ip", "-n", e.Netns, "addr", "add", "10.77.0.1/24", "dev", "xenbr0")
	mustRun(t, "ip", "-n", e.Netns, "link", "set", "xenbr0", "up")

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
