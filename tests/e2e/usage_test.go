package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
)

// TestUsage: the usage ledger on a real guest (TCG) whose vif is on a
// bridge to a peer namespace:
//   - a fixed-size transfer to the peer is billed within 0.5% of what the
//     peer's interface received;
//   - crossing the domain's transfer quota (6M) throttles the guest through
//     the rate limiter (throughput before and after) and is announced on
//     the event stream;
//   - a CPU burner under cap = 50 for 60 s between two pauses is billed
//     within 0.5% of what its cgroup counted (and, the cap being the
//     cgroup's, at most 30 s and a few periods);
//   - mem-set mid-period closes a record: two records, each with its MiB;
//   - the CLI's table, CSV and the invoice of the month;
//   - a storm of kill -9 of the daemon and of QEMU at random moments
//     (RINGFENCE_USAGE_KILLS, default 15; `make soak` runs 100): the
//     records still tile time and the totals never go back.
func TestUsage(t *testing.T) {
	prices := filepath.Join(t.TempDir(), "prices.conf")
	os.WriteFile(prices, []byte("currency = \"EUR\"\nvcpu_hour = 0.02\nram_gib_hour = 0.01\ntransfer_gb = 0.5\n"), 0o644)
	e := NewEnv(t, "--prices", prices)
	peer := fmt.Sprintf("rfusp%d", os.Getpid())
	mustRun(t, "ip", "netns", "add", peer)
	t.Cleanup(func() { runOut("ip", "netns", "del", peer) })
	// No IPv6 chatter from the bridge side: the peer receives only what
	// the guest sends.
	mustRun(t, "ip", "netns", "exec", e.Netns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	mustRun(t, "ip", "-n", e.Netns, "link", "add", "xenbr0", "type", "bridge")
	mustRun(t, "ip", "-n", e.Netns, "link", "set", "xenbr0", "up")
	mustRun(t, "ip", "-n", e.Netns, "link", "add", "pu0", "type", "veth", "peer", "name", "pu0p", "netns", peer)
	mustRun(t, "ip", "-n", e.Netns, "link", "set", "pu0", "master", "xenbr0", "up")
	mustRun(t, "ip", "-n", peer, "addr", "add", "10.81.0.1/24", "dev", "pu0p")
	mustRun(t, "ip", "-n", peer, "link", "set", "pu0p", "up")
	mustRun(t, "ip", "netns", "exec", peer, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")

	c := e.Boot("u1", `maxmem = 256
cap = 50
on_crash = "restart"
transfer_quota = "6M"
transfer_action = "throttle:512Kbit"
vif = [ 'mac=00:16:3e:81:00:02,bridge=xenbr0' ]`)
	c.Do("ip addr add 10.81.0.2/24 dev eth0; ip link set eth0 up; echo addr-$((6*7))", "addr-42", 30*time.Second)
	e.Await("the guest to answer ping", 30*time.Second, func() bool {
		_, err := runOut("ip", "netns", "exec", peer, "ping", "-c", "1", "-W", "1", "10.81.0.2")
		return err == nil
	})

	before := usageTransfer(t, e, c, peer, 4<<20)
	usageQuota(t, e, c, peer, before)
	usageCPU(t, e, c)
	usageMemSet(t, e)
	usageOutputs(t, e)
	usageStorm(t, e)
}

// billed is a domain's billed totals over all its records so far.
func billed(t *testing.T, e *Env, name string) api.UsageCounters {
	t.Helper()
	var sum api.UsageCounters
	for _, r := range usageRecords(t, e, name) {
		sum.CPUNs += r.Delta.CPUNs
		sum.NetTxBytes += r.Delta.NetTxBytes
		sum.NetRxBytes += r.Delta.NetRxBytes
	}
	return sum
}

// usageRecords are a domain's records (from the start of the month).
func usageRecords(t *testing.T, e *Env, name string) []api.UsageRow {
	t.Helper()
	rows, err := e.Client.Usage(context.Background(), client.UsageQuery{Domain: name})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// peerRx is the bytes the peer's interface received.
func peerRx(t *testing.T, peer string) int64 {
	t.Helper()
	out := mustRun(t, "ip", "netns", "exec", peer, "cat", "/sys/class/net/pu0p/statistics/rx_bytes")
	n, _ := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	return n
}

// receiver is the peer's end of a transfer: it accepts one connection,
// counts what arrives until the sender closes, and prints the count.
const receiver = `import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.81.0.1", 5001)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    n += len(b)
print(n, flush=True)
`

// send has the guest send size bytes to the peer over TCP (busybox nc)
// and returns how long the peer took to receive them all.
func send(t *testing.T, c *Console, peer string, size int) time.Duration {
	t.Helper()
	lis := exec.Command("ip", "netns", "exec", peer, "python3", "-c", receiver)
	out, _ := lis.StdoutPipe()
	if err := lis.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { lis.Process.Kill(); lis.Wait() }()
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("the peer's receiver did not start: %q", lines.Text())
	}
	t0 := time.Now()
	c.Send(fmt.Sprintf("dd if=/dev/zero bs=65536 count=%d 2>/dev/null | nc 10.81.0.1 5001", size/65536))
	got := make(chan string, 1)
	go func() { lines.Scan(); got <- lines.Text() }()
	select {
	case n := <-got:
		if n != strconv.Itoa(size) {
			t.Fatalf("the peer received %q bytes, want %d", n, size)
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("the transfer of %d bytes did not end within 5 minutes", size)
	}
	return time.Since(t0)
}

// usageTransfer sends size bytes and checks what is billed against what
// the peer received; it returns the throughput (bytes/s).
func usageTransfer(t *testing.T, e *Env, c *Console, peer string, size int) float64 {
	settle := func() { time.Sleep(2500 * time.Millisecond) } // a sample or two: the ledger reads each second
	settle()
	b0, p0 := billed(t, e, "u1"), peerRx(t, peer)
	d := send(t, c, peer, size)
	settle()
	b1, p1 := billed(t, e, "u1"), peerRx(t, peer)
	got, want := b1.NetTxBytes-b0.NetTxBytes, p1-p0
	t.Logf("transfer of %d bytes: billed tx %d, peer received %d (%.3f%%), %.0f KB/s", size, got, want, 100*float64(got-want)/float64(want), float64(size)/d.Seconds()/1000)
	if want < int64(size) || math.Abs(float64(got-want)) > 0.005*float64(want) {
		t.Fatalf("billed %d bytes sent, the peer received %d: more than 0.5%% apart", got, want)
	}
	return float64(size) / d.Seconds()
}

// usageQuota crosses the 6M quota and checks the throttle and the event.
func usageQuota(t *testing.T, e *Env, c *Console, peer string, before float64) {
	send(t, c, peer, 4<<20) // over the 6M quota
	var ev api.Event
	found := errors.New("found")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := e.Client.Events(ctx, 0, func(x api.Event) error {
		if x.Type == api.EventUsage && x.Action == api.EvQuotaCrossed && x.Domain == "u1" {
			ev = x
			return found
		}
		return nil
	})
	if !errors.Is(err, found) {
		t.Fatalf("no quota-crossed event within 60 s: %v", err)
	}
	if !strings.Contains(ev.Detail, "throttle to 512000 bit/s") {
		t.Fatalf("event %+v", ev)
	}
	tap := "vif" + itoa(e.Domain("u1").ID) + ".0"
	e.Await("the throttle on the tap", 60*time.Second, func() bool {
		q, _ := runOut("ip", "netns", "exec", e.Netns, "tc", "qdisc", "show", "dev", tap)
		return strings.Contains(q, "rate 512Kbit")
	})
	d := send(t, c, peer, 256<<10)
	after := float64(256<<10) / d.Seconds()
	t.Logf("throughput before the quota %.0f KB/s, after %.0f KB/s", before/1000, after/1000)
	if after > 512e3/8*1.3 || after > before/2 {
		t.Fatalf("throughput after the quota %.0f B/s: not throttled to 512 Kbit/s (before: %.0f B/s)", after, before)
	}
}

// usageCPU bills a burner under a 50% cap between two pauses.
func usageCPU(t *testing.T, e *Env, c *Console) {
	c.Do("(while :; do :; done) & echo burn-$((6*7))", "burn-42", 30*time.Second)
	cpuacct := func() int64 {
		n, _ := strconv.ParseInt(cgroupValue(e.State, "u1", "cpuacct.usage"), 10, 64)
		if n == 0 {
			for _, l := range strings.Split(cgroupValue(e.State, "u1", "cpu.stat"), "\n") {
				if k, v, ok := strings.Cut(l, " "); ok && k == "usage_usec" {
					n, _ = strconv.ParseInt(v, 10, 64)
					n *= 1000
				}
			}
		}
		return n
	}
	e.MustRF("pause", "u1")
	c0 := cpuacct()
	e.MustRF("unpause", "u1")
	time.Sleep(60 * time.Second)
	e.MustRF("pause", "u1")
	c1 := cpuacct()
	e.MustRF("unpause", "u1")
	rows := usageRecords(t, e, "u1")
	// The running record between the two pauses.
	var win *api.UsageRow
	for i := len(rows) - 1; i > 0; i-- {
		if rows[i].Alloc.State == api.StatePaused && rows[i-1].Alloc.State == api.StateRunning {
			win = &rows[i-1]
			break
		}
	}
	if win == nil {
		t.Fatalf("no running record between two pauses: %+v", rows)
	}
	got, cg := win.Delta.CPUNs, c1-c0
	t.Logf("burner under cap 50 for %.1f s: billed %.3f CPU-s, the cgroup %.3f CPU-s (%.3f%%); %.3f of 30 s", float64(win.Ns)/1e9,
		float64(got)/1e9, float64(cg)/1e9, 100*float64(got-cg)/float64(cg), float64(cg)/30e9)
	if cg <= 0 || math.Abs(float64(got-cg)) > 0.005*float64(cg) {
		t.Fatalf("billed %d CPU-ns, the cgroup counted %d: more than 0.5%% apart", got, cg)
	}
	// The cap is the cgroup's: at most half of the window, a few periods.
	if float64(cg) > 0.5*float64(win.Ns)+0.5e9 {
		t.Fatalf("the cgroup used %d ns in %d ns under a 50%% cap", cg, win.Ns)
	}
	c.Send("kill %1")
}

// usageMemSet: a mem-set closes the record; each side has its MiB.
func usageMemSet(t *testing.T, e *Env) {
	time.Sleep(time.Second)
	e.MustRF("mem-set", "u1", "192m")
	time.Sleep(2 * time.Second)
	rows := usageRecords(t, e, "u1")
	n := len(rows)
	if n < 2 || rows[n-2].Reason != "mem" || rows[n-2].Alloc.MemMiB != 128 || rows[n-1].Alloc.MemMiB != 192 || rows[n-1].Reason != "open" {
		t.Fatalf("records after mem-set: %+v", rows[max(0, n-3):])
	}
	for _, r := range rows[n-2:] {
		mibH := float64(r.Alloc.MemMiB) * float64(r.Ns) / 3600e9
		if r.Ns <= 0 || math.Abs(mibH-float64(r.Alloc.MemMiB)*float64(r.EndNs-r.StartNs)/3600e9) > 1e-9 {
			t.Fatalf("record %+v: %.6f MiB-hours", r, mibH)
		}
	}
}

// usageOutputs: the CLI's table (80 columns), CSV, and the invoice.
func usageOutputs(t *testing.T, e *Env) {
	table := e.MustRF("usage", "--domain", "u1")
	for _, l := range strings.Split(strings.TrimSpace(table), "\n") {
		if len(l) > 80 {
			t.Fatalf("usage line over 80 columns: %q", l)
		}
	}
	if csv := e.MustRF("usage", "--by", "day", "--csv"); !strings.Contains(csv, ",u1,") || !strings.HasPrefix(csv, "start,end,domain") {
		t.Fatalf("usage --csv:\n%s", csv)
	}
	var inv api.Invoice
	json.Unmarshal([]byte(e.MustRF("usage", "invoice", "--json")), &inv)
	items := map[string]bool{}
	for _, l := range inv.Lines {
		items[l.Item] = l.Quantity > 0
	}
	if !items["vcpu-hours"] || !items["ram-gib-hours"] || !items["transfer-gb"] || inv.Currency != "EUR" {
		t.Fatalf("invoice %+v", inv)
	}
	if r := e.RF("usage", "--by", "week"); r.Code == 0 || !strings.Contains(r.Stderr, "hour, day or month") {
		t.Fatalf("usage --by week: %+v", r)
	}
	if r := e.RF("usage", "invoice", "--month", "December"); r.Code == 0 || !strings.Contains(r.Stderr, "YYYY-MM") {
		t.Fatalf("invoice --month December: %+v", r)
	}
}

// usageKills is the storm's size: RINGFENCE_USAGE_KILLS (default 15).
func usageKills() int {
	if n, err := strconv.Atoi(os.Getenv("RINGFENCE_USAGE_KILLS")); err == nil && n > 0 {
		return n
	}
	return 15
}

// usageStorm kills the daemon or QEMU at random moments and checks the
// records tile and the totals only grow.
func usageStorm(t *testing.T, e *Env) {
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	n := usageKills()
	qemuKills := 0
	for i := 0; i < n; i++ {
		time.Sleep(time.Duration(rng.Intn(1500)) * time.Millisecond)
		if rng.Intn(4) == 0 {
			if pids := e.QEMUs(); len(pids) > 0 {
				syscall.Kill(pids[0], syscall.SIGKILL)
				qemuKills++
			}
		}
		if rng.Intn(4) != 0 {
			e.KillDaemon()
			e.StartDaemon()
		}
	}
	restarted := false
	e.Await("u1 running again", 2*time.Minute, func() bool {
		for _, d := range e.List() {
			if d.Spec.Name != "u1" {
				continue
			}
			// A kill of the QEMU that on_crash=restart was starting
			// leaves the domain crashed (a failed restart is not
			// retried): the admin starts it, and its records go on.
			if d.State == api.StateCrashed && !restarted {
				t.Logf("u1 crashed in the storm (its restart was killed): starting it")
				e.MustRF("start", "u1")
				restarted = true
			}
			return d.State == api.StateRunning
		}
		return false
	})
	time.Sleep(2 * time.Second)
	rows := usageRecords(t, e, "u1")
	var prev api.UsageCounters
	for i, r := range rows {
		if i > 0 && r.StartNs != rows[i-1].EndNs {
			t.Fatalf("after %d kills (%d of QEMU) the records do not tile: %+v then %+v", n, qemuKills, rows[i-1], r)
		}
		if r.Delta.CPUNs < 0 || r.Delta.NetTxBytes < 0 || r.Delta.NetRxBytes < 0 {
			t.Fatalf("a record went backwards: %+v", r)
		}
		prev.CPUNs += r.Delta.CPUNs
	}
	t.Logf("storm: %d kills (%d of QEMU), %d records, billed CPU %.2f s", n, qemuKills, len(rows), float64(prev.CPUNs)/1e9)
}

// TestUsageMigration: a live migration ends the source's records at the
// handover and the destination's continue the same totals.
func TestUsageMigration(t *testing.T) {
	port := 20000 + (os.Getpid()+7)%20000
	dstAddr, srcAddr := fmt.Sprintf("127.0.0.2:%d", port), fmt.Sprintf("127.0.0.1:%d", port+3)
	src := NewEnvWith(t, EnvOptions{ServeArgs: []string{"--listen", srcAddr, guestStorage()}})
	src.MustRF("host", "trust", "--peer-name", "src", "--name", "127.0.0.1")
	dst := NewEnvWith(t, EnvOptions{Netns: src.Netns, ServeArgs: []string{"--listen", dstAddr, guestStorage()}})
	dst.JoinTo(src, "dst", "127.0.0.2")
	c := src.Boot("m1", "")
	c.Do("(while :; do :; done) & echo burning-$((6*7))", "burning-42", time.Minute)
	time.Sleep(3 * time.Second) // CPU to count, a sample or two
	src.MustRF("migrate", "m1", dstAddr)
	time.Sleep(2 * time.Second)

	srcRows := usageRecords(t, src, "m1")
	last := srcRows[len(srcRows)-1]
	if last.Reason != "migrated" || last.Totals == nil {
		t.Fatalf("the source's last record: %+v", last)
	}
	dstRows := usageRecords(t, dst, "m1")
	if len(dstRows) == 0 || dstRows[0].Totals == nil {
		t.Fatalf("the destination's records: %+v", dstRows)
	}
	first := dstRows[0]
	start := first.Totals.CPUNs - first.Delta.CPUNs
	t.Logf("source ended with %.3f CPU-s, the destination started from %.3f, now %.3f", float64(last.Totals.CPUNs)/1e9,
		float64(start)/1e9, float64(dstRows[len(dstRows)-1].Totals.CPUNs)/1e9)
	if last.Totals.CPUNs == 0 || start != last.Totals.CPUNs ||
		first.Totals.NetTxBytes-first.Delta.NetTxBytes != last.Totals.NetTxBytes {
		sj, _ := json.Marshal(srcRows)
		dj, _ := json.Marshal(dstRows)
		t.Fatalf("totals not continuous: the source's records %s\nthe destination's %s", sj, dj)
	}
	if first.Alloc.State != api.StateRunning {
		t.Fatalf("the destination's first record: %+v (its records start when the guest runs there)", first)
	}
	dst.MustRF("destroy", "m1")
}
