package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/image"
)

// sharedPool makes one directory every host's namespace sees at the same
// path and declares it a cluster pool once; every host makes it.
func sharedPool(t *testing.T, envs []*Env) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "rfha")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	envs[0].MustRF("pool", "create", "shared", "--dir", dir, "--cluster")
	for _, e := range envs {
		e.Await("the cluster pool on every host", 20*time.Second, func() bool {
			return strings.Contains(e.RF("pool", "list").Stdout, dir)
		})
	}
	return dir
}

// haGuest writes an HA domain file whose disk is on the shared pool.
func haGuest(e *Env, dir, name, extra string) string {
	e.t.Helper()
	e.MustRF("volume", "create", "shared", name+".img", "16M")
	return e.WriteConfig(name, fmt.Sprintf("disk = ['%s/%s.img,raw,xvda,w']\nha = 1\non_crash = \"restart\"\n%s", dir, name, extra))
}

// haCluster forms three hosts with a shared pool and boots the HA guest
// g1 on the i-th (1-based), guarded there; extra goes into its file.
func haCluster(t *testing.T, i int, extra string) (*clusterNet, []*Env, api.HAStatus) {
	t.Helper()
	cn, envs := formCluster(t, 3)
	dir := sharedPool(t, envs)
	owner := envs[i-1]
	envs[0].MustRF("create", haGuest(envs[0], dir, "g1", extra), "--host", clusterStatus(t, owner).Name)
	owner.Console("g1").WaitFor(image.ReadyLine, 0, 90*time.Second)
	return cn, envs, haGuarded(owner, "g1")
}

// haGuarded waits until e's HA guards name (owner key claimed, the fence
// guard running) and returns its status.
func haGuarded(e *Env, name string) api.HAStatus {
	e.t.Helper()
	var st api.ClusterStatus
	e.Await(name+" guarded by HA", 30*time.Second, func() bool {
		st = clusterStatus(e.t, e)
		return st.HA != nil && slices.Contains(st.HA.Guests, name) && st.HA.DeadlineInSec != nil && st.HA.GuardPID != 0
	})
	time.Sleep(2 * time.Second) // a loop round past the guard's start: the owner key is written
	checkGuardSmall(e.t, st.HA.GuardPID)
	return *st.HA
}

// checkGuardSmall: the fence guard is the small binary (found beside the
// daemon's), and locking it in memory holds a few MB, not the daemon's
// whole binary and a Go heap arena (144 MB before MCL_ONFAULT and
// cmd/ringfence-guard).
func checkGuardSmall(t *testing.T, pid int) {
	t.Helper()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return // fenced and gone meanwhile
	}
	if filepath.Base(exe) != "ringfence-guard" {
		t.Errorf("the fence guard runs %s, want the ringfence-guard helper", exe)
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(status), "\n") {
		var kb int
		if n, _ := fmt.Sscanf(l, "VmRSS: %d kB", &kb); n == 1 && kb > 16<<10 {
			t.Errorf("the fence guard holds %d kB resident, want a few MB", kb)
		}
	}
}

// survivorQEMUs waits until exactly one of envs runs a QEMU (name's,
// taken over), and returns that host's env.
func survivorQEMUs(t *testing.T, name string, timeout time.Duration, envs ...*Env) *Env {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var on []*Env
		for _, e := range envs {
			if len(e.QEMUs()) > 0 {
				on = append(on, e)
			}
		}
		if len(on) > 1 {
			t.Fatalf("%s runs on %d hosts at once", name, len(on))
		}
		if len(on) == 1 {
			return on[0]
		}
		if time.Now().After(deadline) {
			var logs []string
			for _, e := range envs {
				logs = append(logs, tail(e.DaemonLog(), 2000))
			}
			t.Fatalf("no survivor started %s within %s:\n%s", name, timeout, strings.Join(logs, "\n---\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// takeoverPhases reads a survivor's ha.takeover event from its event
// stream (replayed from the start), and checks its log line.
func takeoverPhases(t *testing.T, e *Env, name string) (seen, txn, started time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var ev api.HATakeover
	found := errors.New("found")
	err := e.Client.Events(ctx, 0, func(x api.Event) error {
		if x.Type == api.EventHA && x.Action == api.EvHATakeover && x.Domain == name {
			if err := json.Unmarshal([]byte(x.Detail), &ev); err != nil {
				return err
			}
			return found
		}
		return nil
	})
	if !errors.Is(err, found) {
		t.Fatalf("no ha.takeover event of %s on the survivor's stream: %v\n%s", name, err, tail(e.DaemonLog(), 3000))
	}
	if ev.To != clusterStatus(t, e).Name || ev.From == "" || ev.ExpirySeenNs == 0 || ev.TxnNs < ev.ExpirySeenNs || ev.QEMUStarted < ev.TxnNs {
		t.Errorf("the ha.takeover event's phases are out of order: %+v", ev)
	}
	if !strings.Contains(e.DaemonLog(), "msg=ha.takeover domain="+name) {
		t.Errorf("no ha.takeover log line for %s", name)
	}
	return time.Unix(0, ev.ExpirySeenNs), time.Unix(0, ev.TxnNs), time.Unix(0, ev.QEMUStarted)
}

// noSecondRun checks, for a while, that the returning host runs no QEMU
// of name and the survivor still runs the domain's one.
func noSecondRun(t *testing.T, back, survivor *Env, name string, pid int) (knownDefect bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		if q := qemusOf(back, name); len(q) != 0 {
			t.Fatalf("the returning host started a QEMU again: %v\n%s", q, tail(back.DaemonLog(), 3000))
		}
	}
	if d := survivor.Domain(name); d.PID != pid {
		// A known defect (issue 21, docs/cluster.md "Left out"): on a
		// loaded host the returning member can delay the survivor's
		// lease renewals past its 7 s fence deadline, so it fences its
		// own copy without cause. It must then start it again itself
		// (it still owns it): never lost, never twice.
		if !strings.Contains(survivor.DaemonLog(), "ha.fenced") {
			t.Fatalf("the survivor's %s changed with no fence: pid %d, was %d", name, survivor.Domain(name).PID, pid)
		}
		for end := time.Now().Add(60 * time.Second); time.Now().Before(end) && len(qemusOf(survivor, name)) == 0; time.Sleep(500 * time.Millisecond) {
		}
		t.Logf("KNOWN DEFECT (issue 21, fence without cause): the survivor fenced %s after the heal; running again there: %v (pid %d, was %d)",
			name, len(qemusOf(survivor, name)) == 1, survivor.Domain(name).PID, pid)
		if q := qemusOf(back, name); len(q) != 0 {
			t.Fatalf("the returning host started a QEMU again: %v", q)
		}
		return true
	}
	return false
}

// qemusOf are e's QEMUs of the domain name (its run dir in the argv).
func qemusOf(e *Env, name string) []int {
	var out []int
	for _, pid := range e.QEMUs() {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(b), "/domains/"+name+"/") {
			out = append(out, pid)
		}
	}
	return out
}

// TestClusterHAKill: the owner host dies whole (daemon, fence guard and
// QEMU killed with SIGKILL): a survivor restarts the HA guest from the
// shared disk once the owner's lease has expired; the host that comes
// back starts nothing, and its stale copy is gone.
func TestClusterHAKill(t *testing.T) {
	// The owner is beta, which is not etcd's leader (alpha started the
	// cluster): the cut test has the leader's case.
	_, envs, st := haCluster(t, 2, "")
	a, b, c := envs[1], envs[0], envs[2] // a: the owner; b and c: the survivors
	if out := b.MustRF("cluster", "plan"); !strings.Contains(out, "g1->") {
		t.Errorf("cluster plan does not place g1:\n%s", out)
	}

	kill := time.Now()
	a.KillDaemon()
	syscall.Kill(st.GuardPID, syscall.SIGKILL)
	for _, pid := range a.QEMUs() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	s := survivorQEMUs(t, "g1", 60*time.Second, b, c)
	up := time.Now()
	seen, txn, started := takeoverPhases(t, s, "g1")
	t.Logf("failover by kill: expiry seen %.1f s, txn %.1f s, QEMU started %.1f s after the kill (seen by the test at %.1f s)",
		seen.Sub(kill).Seconds(), txn.Sub(kill).Seconds(), started.Sub(kill).Seconds(), up.Sub(kill).Seconds())
	if seen.Sub(kill) < 7*time.Second {
		t.Errorf("the survivor saw the owner key go %.1f s after the kill: before the lease could expire", seen.Sub(kill).Seconds())
	}
	s.Console("g1").WaitFor(image.ReadyLine, 0, 90*time.Second)
	pid := s.Domain("g1").PID

	// beta returns: its g1 died with it and is not started again.
	a.StartDaemon()
	awaitHosts(b, "alpha:member:true:true beta:member:true:true gamma:member:true:true", 60*time.Second)
	noSecondRun(t, a, s, "g1", pid)
	owner := clusterStatus(t, a).Name
	a.Await(owner+" forgets its dead copy of g1", 20*time.Second, func() bool {
		l := clusterList(a)["g1"]
		return l != "" && !strings.HasPrefix(l, owner+":")
	})
	if l := clusterList(b)["g1"]; !strings.HasPrefix(l, clusterStatus(t, s).Name+":") {
		t.Errorf("after alpha's return the cluster lists g1 as %q", l)
	}
}

// TestClusterHACut: the owner host's link is cut. It fences (its HA
// QEMU killed on its own clock) before a survivor's QEMU starts; once
// the link is back it rejoins, forgets its fenced copy and starts
// nothing.
func TestClusterHACut(t *testing.T) {
	cn, envs, _ := haCluster(t, 1, "persistent = 1")
	a, b, c := envs[0], envs[1], envs[2]
	// A non-HA guest on alpha too: a fence never touches it.
	a.MustRF("create", a.WriteConfig("plain", ""), "--host", "alpha", "-p")
	plainPID := a.Domain("plain").PID

	cut := time.Now()
	mustRun(t, "ip", "-n", cn.sw, "link", "set", "sw1", "down")
	s := survivorQEMUs(t, "g1", 60*time.Second, b, c)
	seen, txn, started := takeoverPhases(t, s, "g1")
	fenced := fencedAt(t, a, "g1")
	t.Logf("failover by cut: alpha fenced %.1f s, expiry seen %.1f s, txn %.1f s, QEMU started %.1f s after the cut",
		fenced.Sub(cut).Seconds(), seen.Sub(cut).Seconds(), txn.Sub(cut).Seconds(), started.Sub(cut).Seconds())
	for _, l := range strings.Split(a.DaemonLog(), "\n") {
		if strings.Contains(l, "lease renewal failed") || strings.Contains(l, "msg=ha.fenced") {
			t.Logf("alpha: %s", l)
		}
	}
	if !fenced.Before(started) || !fenced.Before(txn) {
		t.Fatalf("alpha fenced at %s, after the survivor's takeover (txn %s, QEMU %s)", fenced, txn, started)
	}
	if d := a.Domain("plain"); d.PID != plainPID {
		t.Fatalf("the fence touched the non-HA guest: pid %d, was %d", d.PID, plainPID)
	}
	if st := clusterStatus(t, a); st.HA == nil || !slices.Contains(st.HA.Fenced, "g1") {
		t.Errorf("alpha's status does not say it fenced g1: %+v", st.HA)
	}
	s.Console("g1").WaitFor(image.ReadyLine, 0, 90*time.Second)
	pid := s.Domain("g1").PID

	mustRun(t, "ip", "-n", cn.sw, "link", "set", "sw1", "up")
	awaitHosts(a, "alpha:member:true:true beta:member:true:true gamma:member:true:true", 60*time.Second)
	a.Await("alpha forgets its fenced copy of g1", 20*time.Second, func() bool {
		l := clusterList(a)["g1"]
		return l != "" && !strings.HasPrefix(l, "alpha:")
	})
	if noSecondRun(t, a, s, "g1", pid) {
		return
	}
	refused(t, a, "", "start", "g1") // it is the survivor's: forwarded there, already running
	if n := len(b.QEMUs()) + len(c.QEMUs()); n != 1 {
		t.Fatalf("%d QEMUs on the survivors, want g1's one", n)
	}
}

var fencedRE = regexp.MustCompile(`msg=ha.fenced host=\S+ domains="?\[([^\]]*)\]"? .* at_ns=(\d+)`)

// fencedAt is when e's log says it fenced name.
func fencedAt(t *testing.T, e *Env, name string) time.Time {
	t.Helper()
	// The daemon announces a fence by its guard within a second of
	// being told; the time is the kill's, from the record.
	for end := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		for _, m := range fencedRE.FindAllStringSubmatch(e.DaemonLog(), -1) {
			if slices.Contains(strings.Fields(m[1]), name) {
				n, _ := strconv.ParseInt(m[2], 10, 64)
				return time.Unix(0, n)
			}
		}
		if time.Now().After(end) {
			break
		}
	}
	t.Fatalf("%s never fenced %s:\n%s", e.Dir, name, tail(e.DaemonLog(), 3000))
	return time.Time{}
}

// TestClusterHABadInput: HA is refused outside a cluster, on a disk no
// other host reaches, and when no other host could restart the domain
// (the N+1 plan), each with one clear error and nothing changed.
func TestClusterHABadInput(t *testing.T) {
	cn := newClusterNet(t, 1)
	a := cn.env(1)
	if err := os.WriteFile(filepath.Join(a.Dir, "g0.img"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	a.MustRF("create", a.WriteConfig("g0", fmt.Sprintf("disk = ['%s,raw,xvda,w']", filepath.Join(a.Dir, "g0.img"))), "-p")
	refused(t, a, "this host is in none", "ha", "g0", "on")
	a.MustRF("cluster", "init", "--peer-name", "alpha", "--name", cn.addr(1))
	awaitHosts(a, "alpha:member:true:true", 60*time.Second)
	dir := sharedPool(t, []*Env{a})

	refused(t, a, "disk xvda ("+filepath.Join(a.Dir, "g0.img")+") is not on a cluster pool", "ha", "g0", "on")
	refused(t, a, "expected on or off", "ha", "g0", "maybe")
	if d := a.Domain("g0"); d.Spec.HA {
		t.Fatal("a refused `ha on` turned HA on")
	}
	// On the cluster pool, but alpha is the only host: no survivor.
	before := len(a.QEMUs())
	refused(t, a, "would break the cluster's N+1 plan: if alpha failed, g1", "create", haGuest(a, dir, "g1", ""))
	refused(t, a, "ha", "create", a.WriteConfig("g2", "ha = 2"))
	if len(a.QEMUs()) != before {
		t.Fatal("a refused HA create started a QEMU")
	}
	if _, err := a.Client.Get(t.Context(), "g1"); err == nil {
		t.Fatal("a refused HA create left g1")
	}
	var plan api.HAPlan
	if err := json.Unmarshal([]byte(a.MustRF("cluster", "plan", "--json")), &plan); err != nil || !plan.OK {
		t.Fatalf("cluster plan with no HA domain: %+v %v", plan, err)
	}
	a.MustRF("ha", "g0", "off")
}

// TestClusterHAStop: the owner's daemon is stopped (SIGSTOP): its fence
// guard, a separate process, kills the HA guest at the deadline, before
// a survivor starts it; the daemon, continued, restarts nothing.
func TestClusterHAStop(t *testing.T) {
	_, envs, _ := haCluster(t, 1, "")
	a, b, c := envs[0], envs[1], envs[2]
	qemu := qemusOf(a, "g1")

	stop := time.Now()
	syscall.Kill(a.daemon.Process.Pid, syscall.SIGSTOP)
	resumed := false
	cont := func() {
		if !resumed {
			resumed = true
			syscall.Kill(a.daemon.Process.Pid, syscall.SIGCONT)
		}
	}
	defer cont()
	var killed time.Time
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end) && killed.IsZero(); time.Sleep(50 * time.Millisecond) {
		if len(qemusOf(a, "g1")) == 0 {
			killed = time.Now()
		}
	}
	if killed.IsZero() {
		t.Fatalf("the fence guard did not kill g1's QEMU %v within 30 s of the daemon's stop", qemu)
	}
	s := survivorQEMUs(t, "g1", 60*time.Second, b, c)
	_, txn, started := takeoverPhases(t, s, "g1")
	t.Logf("daemon stopped: guard fenced %.1f s, txn %.1f s, QEMU started %.1f s after the stop",
		killed.Sub(stop).Seconds(), txn.Sub(stop).Seconds(), started.Sub(stop).Seconds())
	if !killed.Before(txn) {
		t.Fatalf("the guard fenced after the survivor's takeover (txn %s, fence %s)", txn, killed)
	}
	pid := s.Domain("g1").PID
	cont()
	awaitHosts(b, "alpha:member:true:true beta:member:true:true gamma:member:true:true", 60*time.Second)
	noSecondRun(t, a, s, "g1", pid)
	if !strings.Contains(a.DaemonLog(), "by=guard") {
		t.Errorf("the continued daemon does not announce the guard's fence:\n%s", tail(a.DaemonLog(), 2000))
	}
}

// TestClusterHAEvacuate: an HA guest live-migrated away (host evacuate)
// keeps HA on its new host, which takes its owner key over from the
// source without fencing it.
func TestClusterHAEvacuate(t *testing.T) {
	_, envs, _ := haCluster(t, 1, "")
	a, b, c := envs[0], envs[1], envs[2]
	b.MustRF("host", "evacuate", "alpha")
	dest := survivorQEMUs(t, "g1", 30*time.Second, b, c)
	pid := dest.Domain("g1").PID
	haGuarded(dest, "g1")
	time.Sleep(7 * time.Second) // past the stale-copy threshold (5 s)
	if d := dest.Domain("g1"); d.PID != pid || !d.Spec.HA {
		t.Fatalf("g1 after its evacuation: pid %d (was %d), HA %v\n%s", d.PID, pid, d.Spec.HA, tail(dest.DaemonLog(), 3000))
	}
	if st := clusterStatus(t, a); st.HA == nil || len(st.HA.Guests) != 0 || st.HA.DeadlineInSec != nil {
		t.Errorf("the evacuated host still guards HA guests: %+v", st.HA)
	}
	if strings.Contains(dest.DaemonLog(), "msg=ha.fenced") {
		t.Errorf("the destination fenced the guest it received:\n%s", tail(dest.DaemonLog(), 3000))
	}
	a.MustRF("host", "resume", "alpha")
}

// TestClusterHAStopResumed: the owner's daemon stopped just long enough
// for its fence guard to kill the HA guest, then continued before its
// lease can expire. It still holds the owner key on that lease, so no
// survivor may take the guest: the owner starts it again itself (it
// used to release the key, as for a guest stopped on purpose, and the
// guest then ran nowhere: the HA soak's lost guests).
func TestClusterHAStopResumed(t *testing.T) {
	_, envs, _ := haCluster(t, 1, "")
	a, b, c := envs[0], envs[1], envs[2]
	old := qemusOf(a, "g1")
	syscall.Kill(a.daemon.Process.Pid, syscall.SIGSTOP)
	var killed bool
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end) && !killed; time.Sleep(20 * time.Millisecond) {
		killed = len(qemusOf(a, "g1")) == 0
	}
	syscall.Kill(a.daemon.Process.Pid, syscall.SIGCONT)
	if !killed {
		t.Fatalf("the fence guard did not kill g1's QEMU %v within 20 s of the daemon's stop", old)
	}
	var survivor *Env
	a.Await("g1 started again on its owner", 60*time.Second, func() bool {
		if n := len(qemusOf(b, "g1")) + len(qemusOf(c, "g1")); n != 0 {
			// Legitimate only if the owner's lease ran out before its
			// first renewal after SIGCONT (a loaded machine): the key
			// went with it and a survivor took over.
			if !strings.Contains(a.DaemonLog(), "lease had expired") {
				t.Fatalf("a survivor started g1 while its owner's lease held:\n%s", tail(a.DaemonLog(), 3000))
			}
			survivor = b
			if len(qemusOf(c, "g1")) != 0 {
				survivor = c
			}
			return true
		}
		q := qemusOf(a, "g1")
		return len(q) == 1 && q[0] != old[0]
	})
	if survivor != nil {
		t.Log("alpha's lease expired before its first renewal after SIGCONT: a survivor took g1 over; checking no second run")
		survivor.Console("g1").WaitFor(image.ReadyLine, 0, 90*time.Second)
		for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
			if n := len(qemusOf(a, "g1")) + len(qemusOf(b, "g1")) + len(qemusOf(c, "g1")); n != 1 {
				t.Fatalf("g1 runs %d times after the takeover", n)
			}
		}
		return
	}
	a.Console("g1").WaitFor(image.ReadyLine, 0, 90*time.Second)
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		if n := len(qemusOf(b, "g1")) + len(qemusOf(c, "g1")); n != 0 {
			t.Fatalf("g1 runs on its owner and on a survivor (%d)", n)
		}
	}
}

// leaderOf is etcd's leader as e's `cluster status` says ("" if none).
func leaderOf(t *testing.T, e *Env) string {
	for _, h := range clusterStatus(t, e).Hosts {
		if h.Leader {
			return h.Name
		}
	}
	return ""
}

// TestClusterHALeaderOff: etcd's leader hands its leadership to a host
// without HA guests when an HA guest starts on it (a failed leader's
// guests wait for an election and the new leader's extension of every
// lease: bench/failover), and it stays there.
func TestClusterHALeaderOff(t *testing.T) {
	_, envs := formCluster(t, 3)
	a := envs[0]
	dir := sharedPool(t, envs)
	var lead string
	a.Await("an etcd leader", 30*time.Second, func() bool { lead = leaderOf(t, a); return lead != "" })
	var owner *Env
	for _, e := range envs {
		if clusterStatus(t, e).Name == lead {
			owner = e
		}
	}
	a.MustRF("create", haGuest(a, dir, "g1", ""), "--host", lead)
	haGuarded(owner, "g1")
	a.Await("etcd's leadership off "+lead, 60*time.Second, func() bool { l := leaderOf(t, a); return l != "" && l != lead })
	if !strings.Contains(owner.DaemonLog(), "leadership handed to a host with fewer HA guests") {
		t.Errorf("%s's log does not say why it handed the leadership on:\n%s", lead, tail(owner.DaemonLog(), 2000))
	}
	now := leaderOf(t, a)
	t.Logf("etcd's leader: %s (with g1) -> %s", lead, now)
	// It stays off: an election on a loaded machine may hand it back
	// (etcd's choice, not ours), and then it moves off again within the
	// move gap; what must not happen is a move back and forth (the count
	// on the leader only falls), so the handovers stay few.
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		if l := leaderOf(t, a); l == lead {
			t.Logf("an election gave the leadership back to %s: it must move off again", lead)
			a.Await("etcd's leadership off "+lead+" again", 60*time.Second, func() bool { l := leaderOf(t, a); return l != "" && l != lead })
		}
	}
	if n := strings.Count(owner.DaemonLog(), "leadership handed to a host with fewer HA guests"); n > 3 {
		t.Errorf("%s handed the leadership on %d times in a minute: it ping-pongs", lead, n)
	}
	if out := a.MustRF("cluster", "status"); !strings.Contains(out, "leader") {
		t.Errorf("cluster status does not show the leader:\n%s", out)
	}
	a.RF("destroy", "g1")
}
