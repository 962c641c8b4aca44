package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rate= passes full-size frames both ways and holds bulk transfers to
// the rate. The kernel once got the token bucket's size in the wrong
// unit: at rates under ~6 Mbit/s the bucket was smaller than a frame
// (800 bytes at 4 Mbit/s), so no full-size frame ever passed.
func TestVifRateFullFrames(t *testing.T) {
	e := NewEnv(t)
	e.hostBridge("xenbr0", "10.77.0.1/24")
	c := e.Boot("shaped", `vif = [ 'mac=00:16:3e:01:02:07,bridge=xenbr0,rate=4Mb/s' ]`)
	c.Do("killall udhcpc; ip addr flush dev eth0; ip addr add 10.77.0.2/24 dev eth0; echo addr-$((2*3))", "addr-6", 30*time.Second)

	// Full-size frames out of the guest (its transmit: the IFB's bucket)
	// and back (the tap's).
	off := len(c.Output())
	c.Send("ping -c 5 -s 1400 10.77.0.1; echo ping-$((3*3))")
	end := c.WaitFor("ping-9", off, 60*time.Second)
	if out := c.Output()[off:end]; !strings.Contains(out, "5 packets received") {
		t.Fatalf("full-size pings through rate=4Mb/s:\n%s", out)
	}

	// 1 MiB from the guest to the host: every byte arrives, and no
	// faster than the rate allows (with room for one interval's burst).
	const mib = 1
	hold := filepath.Join(e.Dir, "hold")
	mustRun(t, "mkfifo", hold)
	recv := exec.Command("ip", "netns", "exec", e.Netns, "sh", "-c", "busybox nc -l -p 6000 <>"+hold+" | wc -c")
	var got strings.Builder
	recv.Stdout = &got
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { recv.Wait(); close(done) }()
	t.Cleanup(func() { recv.Process.Kill(); <-done })
	time.Sleep(300 * time.Millisecond)
	off = len(c.Output())
	t0 := time.Now()
	c.Send(fmt.Sprintf("dd if=/dev/zero bs=64k count=%d 2>/dev/null | nc 10.77.0.1 6000; echo sent-$((4*4))", mib*16))
	c.WaitFor("sent-16", off, 2*time.Minute)
	took := time.Since(t0)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the host's receiver did not end after the guest's sender")
	}
	if n := strings.TrimSpace(got.String()); n != fmt.Sprint(mib<<20) {
		t.Fatalf("the host received %s bytes of %d", n, mib<<20)
	}
	mbit := float64(mib<<20) * 8 / 1e6 / took.Seconds()
	t.Logf("%d MiB out of a rate=4Mb/s vif in %s: %.1f Mbit/s", mib, took.Round(time.Millisecond), mbit)
	if mbit > 6 {
		t.Fatalf("%.1f Mbit/s out of a vif limited to 4 Mb/s", mbit)
	}
}

// hostBridge makes a bridge with an address in the env's namespace, as
// an admin makes xenbr0.
func (e *Env) hostBridge(name, cidr string) {
	e.t.Helper()
	mustRun(e.t, "ip", "-n", e.Netns, "link", "add", name, "type", "bridge")
	mustRun(e.t, "ip", "-n", e.Netns, "addr", "add", cidr, "dev", name)
	mustRun(e.t, "ip", "-n", e.Netns, "link", "set", name, "up")
}

// subtreeWeight is the weight of the daemon's subtree (the parent of
// its domains' cgroups): cpu.shares on v1, cpu.weight on v2.
func subtreeWeight(stateDir, domain string) string {
	for _, dir := range cgroupDirs(stateDir, domain) {
		for _, f := range []string{"cpu.shares", "cpu.weight"} {
			if b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f)); err == nil {
				return strings.TrimSpace(string(b))
			}
		}
	}
	return ""
}

// The domains' subtree weighs what its domains weigh together, so two
// busy guests and a busy host process on one CPU share it as three
// tasks would (each guest about as much as the process), not as two
// (the guests together as much as the process).
func TestSubtreeWeighsItsDomains(t *testing.T) {
	e := NewEnv(t)
	c1 := e.Boot("w1", "cpus = '1'\ncpu_weight = 256")
	c2 := e.Boot("w2", "cpus = '1'\ncpu_weight = 256")
	if got := subtreeWeight(e.State, "w1"); got != "2048" && got != "200" {
		t.Fatalf("two domains of weight 256: the subtree weighs %q, want 2048 (v1) or 200 (v2)", got)
	}
	e.MustRF("sched-credit", "-d", "w2", "-w", "512")
	if got := subtreeWeight(e.State, "w1"); got != "3072" && got != "300" {
		t.Fatalf("weights 256 + 512: the subtree weighs %q, want 3072 (v1) or 300 (v2)", got)
	}
	e.MustRF("sched-credit", "-d", "w2", "-w", "256")

	// A busy process of the host on the guests' CPU, in the cgroup the
	// daemon's subtree is in (its sibling).
	hog := exec.Command("taskset", "-c", "1", "sh", "-c", "while :; do :; done")
	if err := hog.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hog.Process.Kill(); hog.Wait() })
	burn(c1)
	burn(c2)
	time.Sleep(2 * time.Second)
	u := usage(t, 8*time.Second, e.Domain("w1").PID, e.Domain("w2").PID, hog.Process.Pid)
	ratio := (u[0] + u[1]) / 2 / u[2]
	t.Logf("two guests and a host process on CPU 1: %.1f%%, %.1f%%, %.1f%% (a guest / the process %.2f)", u[0], u[1], u[2], ratio)
	// Each guest about as much as the process (1.0); the guests together
	// as one task would give each half the process's (0.5).
	if ratio < 0.7 {
		t.Fatalf("each guest got %.2f of the host process's CPU, want about 1 (guests as tasks, not the subtree as one)", ratio)
	}
	e.MustRF("destroy", "w2")
	if got := subtreeWeight(e.State, "w1"); got != "1024" && got != "100" {
		t.Fatalf("one domain of weight 256 left: the subtree weighs %q, want 1024 (v1) or 100 (v2)", got)
	}
}
