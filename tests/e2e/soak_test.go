package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMigrationSoak moves one counting guest back and forth between two
// daemons RINGFENCE_SOAK times each way, alternating QEMU's TLS and the
// plain stream, and checks after every move that the counter goes on from
// where it was and the guest neither rebooted nor oopsed. Off by default
// (minutes of TCG); `RINGFENCE_SOAK=15 go test -run TestMigrationSoak`.
func TestMigrationSoak(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("RINGFENCE_SOAK"))
	if n <= 0 {
		t.Skip("set RINGFENCE_SOAK=N to run N round trips")
	}
	a, b, _, bAddr, _ := peers(t)
	aAddr := fmt.Sprintf("127.0.0.1:%d", 20000+os.Getpid()%20000+3)
	c := a.Boot("soak", "")
	c.Send(`i=0; while true; do echo tick$i; i=$((i+1)); usleep 10000; done &`)
	c.WaitFor("tick50", 0, 20*time.Second)
	envs, addrs := []*Env{a, b}, []string{bAddr, aAddr}
	for i := 0; i < 2*n; i++ {
		from, to := envs[i%2], envs[(i+1)%2]
		before := lastTick(t, c.Output())
		args := []string{"migrate", "soak", addrs[i%2]}
		mode := "tls"
		if i%4 >= 2 {
			args = append([]string{"migrate", "--plain-stream"}, args[1:]...)
			mode = "plain"
		}
		t0 := time.Now()
		if r := from.RF(args...); r.Code != 0 {
			t.Fatalf("move %d (%s): %+v", i+1, mode, r)
		}
		took := time.Since(t0)
		c = to.Console("soak")
		off := 0
		c.WaitFor("tick", off, 20*time.Second)
		first := firstTick(c.Output())
		c.WaitFor(fmt.Sprintf("tick%d\r", first+10), 0, 20*time.Second)
		got := c.Output()
		for _, bad := range []string{"ringfence: guest ready", "BUG:", "Oops", "Kernel panic", "general protection"} {
			if strings.Contains(got, bad) {
				t.Fatalf("move %d (%s): destination console shows %q:\n%s", i+1, mode, bad, tail(got, 3000))
			}
		}
		if first < before {
			t.Fatalf("move %d (%s): counter restarted at %d (was %d)", i+1, mode, first, before)
		}
		t.Logf("move %d (%s) in %v: counter %d -> %d", i+1, mode, took.Round(time.Millisecond), before, first)
	}
}
