package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/image"
	"github.com/ringfence/ringfence/tests/chaos"
)

// clusterNet is the hosts' network namespaces joined by veth links to a
// switch namespace's bridge (chaos.Net); a host's link can be cut.
type clusterNet struct {
	t  *testing.T
	sw string // the switch namespace (its links sw1..n lead to the hosts)
	*chaos.Net
}

// newClusterNet makes n host namespaces at 10.77.0.1..n/24.
func newClusterNet(t *testing.T, n int) *clusterNet {
	t.Helper()
	nsSeq++
	nt, err := chaos.NewNet(chaos.Prefix("rfc", nsSeq), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nt.Remove)
	return &clusterNet{t: t, sw: nt.Switch, Net: nt}
}

func (cn *clusterNet) addr(i int) string { return cn.Addr(i) }

// env starts host i's daemon (peer listener on its address).
func (cn *clusterNet) env(i int, extra ...string) *Env {
	cn.t.Helper()
	// Three hosts share this machine's two CPUs: each may carry 8 vCPUs,
	// so evacuations onto one host fit its ledger.
	args := append([]string{"--listen", cn.addr(i) + ":7443", guestStorage(), "--vcpu-ratio", "4"}, extra...)
	return NewEnvWith(cn.t, EnvOptions{Netns: cn.Hosts[i-1], ServeArgs: args})
}

// status is a host's `cluster status --json`.
func clusterStatus(t *testing.T, e *Env) api.ClusterStatus {
	t.Helper()
	var st api.ClusterStatus
	if err := json.Unmarshal([]byte(e.MustRF("cluster", "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// hostsLine summarises the hosts as NAME:etcd:voting:up.
func hostsLine(st api.ClusterStatus) string { return chaos.HostsLine(st) }

// awaitHosts waits until e's status lists exactly want.
func awaitHosts(e *Env, want string, timeout time.Duration) {
	e.t.Helper()
	var last Result
	deadline := time.Now().Add(timeout)
	for {
		last = e.RF("cluster", "status", "--json")
		var st api.ClusterStatus
		json.Unmarshal([]byte(last.Stdout), &st)
		if hostsLine(st) == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("after %s the cluster's hosts are not %q: %s %s\ndaemon log:\n%s", timeout, want, last.Stdout, last.Stderr, tail(e.DaemonLog(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// refused runs a CLI verb that must fail with msg in its error.
func refused(t *testing.T, e *Env, msg string, args ...string) {
	t.Helper()
	r := e.RF(args...)
	if r.Code == 0 || !strings.Contains(r.Stderr, msg) {
		t.Errorf("ringfence %s: exit %d, stderr %q; want a refusal saying %q", strings.Join(args, " "), r.Code, r.Stderr, msg)
	}
}

// TestClusterFormJoinLeave: three daemons in three namespaces form a
// cluster on three embedded etcd members over their peer identities;
// bad joins are refused with nothing changed; a member whose daemon
// stops is seen down and comes back by itself; hosts leave one by one,
// and a guest running on one is never touched by any of it.
func TestClusterFormJoinLeave(t *testing.T) {
	cn := newClusterNet(t, 3)
	a, b, c := cn.env(1), cn.env(2), cn.env(3)

	refused(t, a, "in no cluster", "cluster", "status")
	refused(t, a, "in no cluster", "cluster", "leave")
	a.MustRF("cluster", "init", "--peer-name", "alpha", "--name", cn.addr(1))
	if st := clusterStatus(t, a); st.Etcd != "member" || hostsLine(st) != "alpha:member:true:false" && hostsLine(st) != "alpha:member:true:true" {
		t.Fatalf("after init: %+v", st)
	}
	awaitHosts(a, "alpha:member:true:true", 60*time.Second)
	refused(t, a, `already in a cluster as "alpha"`, "cluster", "init")

	// The guest on beta: the cluster never touches a host's runtime.
	b.Boot("g1", "")
	pid := b.Domain("g1").PID

	// Bad joins: no token on an untrusted host, not a token, a tampered one.
	tok := strings.TrimSpace(a.MustRF("host", "token", "--peer-name", "beta"))
	refused(t, b, "not trusted yet", "cluster", "join")
	refused(t, b, "not a Ringfence join token", "cluster", "join", "hello")
	refused(t, b, "token", "cluster", "join", tok[:len(tok)-4]+"AAAA", "--peer-name", "beta", "--name", cn.addr(2))
	refused(t, b, "in no cluster", "cluster", "status")
	awaitHosts(a, "alpha:member:true:true", 60*time.Second)

	b.MustRF("cluster", "join", tok, "--peer-name", "beta", "--name", cn.addr(2))
	awaitHosts(a, "alpha:member:true:true beta:member:true:true", 60*time.Second)
	// A used token, and a name another host has.
	refused(t, c, `already used by "beta"`, "cluster", "join", tok, "--peer-name", "beta", "--name", cn.addr(3))
	tokBeta := strings.TrimSpace(a.MustRF("host", "token"))
	refused(t, c, `"beta" is already a peer`, "cluster", "join", tokBeta, "--peer-name", "beta", "--name", cn.addr(3))
	refused(t, c, "in no cluster", "cluster", "status")

	c.MustRF("cluster", "join", strings.TrimSpace(a.MustRF("host", "token", "--peer-name", "gamma")), "--peer-name", "gamma", "--name", cn.addr(3))
	three := "alpha:member:true:true beta:member:true:true gamma:member:true:true"
	for _, e := range []*Env{a, b, c} {
		awaitHosts(e, three, 60*time.Second)
	}
	if out := b.MustRF("cluster", "status"); !strings.Contains(out, "HOST") || !strings.Contains(out, "gamma") {
		t.Errorf("cluster status text:\n%s", out)
	}
	for _, line := range strings.Split(b.MustRF("cluster", "status"), "\n") {
		if len(line) > 80 {
			t.Errorf("status line over 80 columns: %q", line)
		}
	}

	// gamma's daemon stops: its lease runs out, the others see it down
	// and keep a quorum; started again, it comes back by itself.
	c.StopDaemon()
	awaitHosts(a, "alpha:member:true:true beta:member:true:true gamma:member:true:false", 60*time.Second)
	a.MustRF("host", "peers") // the two left still answer
	c.StartDaemon()
	awaitHosts(a, three, 60*time.Second)

	// Leaving: gamma, then beta (its guest untouched), then alpha alone.
	c.MustRF("cluster", "leave")
	refused(t, c, "in no cluster", "cluster", "status")
	awaitHosts(a, "alpha:member:true:true beta:member:true:true", 60*time.Second)
	b.MustRF("cluster", "leave")
	awaitHosts(a, "alpha:member:true:true", 60*time.Second)
	a.MustRF("cluster", "leave")
	refused(t, a, "in no cluster", "cluster", "status")
	if d := b.Domain("g1"); d.PID != pid || d.State != api.StateRunning && d.State != api.StateBlocked {
		t.Fatalf("the guest on beta changed: %+v (pid was %d)", d, pid)
	}
	// Left for good: a daemon restart does not bring the membership back.
	b.StopDaemon()
	b.StartDaemon()
	refused(t, b, "in no cluster", "cluster", "status")
}

// formCluster starts n daemons and makes them one cluster (alpha, beta,
// gamma, ...), waiting until every host sees every other up.
func formCluster(t *testing.T, n int) (*clusterNet, []*Env) {
	t.Helper()
	return formClusterWitness(t, n, false)
}

// formClusterWitness: with witness, the last host joins as an etcd-only
// witness (never given domains).
func formClusterWitness(t *testing.T, n int, witness bool) (*clusterNet, []*Env) {
	t.Helper()
	return formClusterWith(t, n, witness, nil)
}

// formClusterWith: before (if not nil) runs once the namespaces are made,
// before any daemon starts.
func formClusterWith(t *testing.T, n int, witness bool, before func(*clusterNet)) (*clusterNet, []*Env) {
	t.Helper()
	cn := newClusterNet(t, n)
	if before != nil {
		before(cn)
	}
	var envs []*Env
	var clis []chaos.CLI
	for i := 1; i <= n; i++ {
		e := cn.env(i)
		envs = append(envs, e)
		clis = append(clis, e.cli)
	}
	if err := chaos.Form(cn.Net, clis, witness, 60*time.Second); err != nil {
		t.Fatalf("forming the cluster: %v", err)
	}
	return cn, envs
}

// cli is the env's CLI as chaos runs it: a failure's error carries the
// output and the daemon log's tail.
func (e *Env) cli(args ...string) (string, error) {
	r := e.RF(args...)
	if r.Code != 0 {
		return r.Stdout, fmt.Errorf("ringfence %s: exit %d: %s%s\ndaemon log:\n%s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr, tail(e.DaemonLog(), 3000))
	}
	return r.Stdout, nil
}

// clusterList is a host's `list --json` as name -> host:state.
func clusterList(e *Env) map[string]string {
	out := map[string]string{}
	for _, d := range e.List() {
		out[d.Spec.Name] = d.Host + ":" + string(d.State)
	}
	return out
}

// TestClusterDomains: every host lists every host's domains with a HOST
// column; a verb on a domain from any host is forwarded to its owner over
// the peer channel; a name another host has is refused for a new domain.
func TestClusterDomains(t *testing.T) {
	_, envs := formCluster(t, 3)
	a, b, c := envs[0], envs[1], envs[2]
	bootOn(b, "beta", "g1")
	pid := b.Domain("g1").PID
	for _, e := range envs {
		e.Await("g1 listed on beta", 20*time.Second, func() bool {
			l := clusterList(e)
			return l["g1"] == "beta:running" || l["g1"] == "beta:blocked"
		})
	}
	out := a.MustRF("list")
	if !strings.Contains(out, "Host") || !strings.Contains(out, "beta") {
		t.Errorf("list on alpha has no Host column with beta:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 80 {
			t.Errorf("list line over 80 columns: %q", line)
		}
	}

	// Forwarded verbs: alpha pauses and unpauses beta's guest.
	a.MustRF("pause", "g1")
	if d := b.Domain("g1"); d.State != api.StatePaused || d.PID != pid {
		t.Fatalf("pause from alpha: beta has %s (pid %d, was %d)", d.State, d.PID, pid)
	}
	c.MustRF("unpause", "g1")
	if d := b.Domain("g1"); d.State == api.StatePaused {
		t.Fatalf("unpause from gamma: beta's g1 is still paused")
	}
	if len(a.QEMUs()) != 0 || len(c.QEMUs()) != 0 {
		t.Fatal("a forwarded verb started a QEMU on the forwarding host")
	}

	// A name beta has is refused for a new domain on gamma, nothing made.
	refused(t, c, `"g1" is on host "beta"`, "create", c.WriteConfig("g1", ""))
	if len(c.QEMUs()) != 0 {
		t.Fatal("a refused create left a QEMU")
	}
	// Refused input through the forward: the owner's own error comes back.
	refused(t, a, "mem", "mem-set", "g1", "1")
	if d := b.Domain("g1"); d.Spec.MemoryMiB != 128 || d.PID != pid {
		t.Fatalf("a refused mem-set changed g1: %+v", d.Spec)
	}

	// Destroy from gamma: gone everywhere.
	c.MustRF("destroy", "g1")
	for _, e := range envs {
		e.Await("g1 gone from every list", 20*time.Second, func() bool { _, ok := clusterList(e)["g1"]; return !ok })
	}
	if len(b.QEMUs()) != 0 {
		t.Fatal("the destroy forwarded to beta left its QEMU")
	}
}

// TestClusterPlacement: two hosts and an etcd-only witness (the small
// site's shape). A create without --host goes to the host with the most
// room in its ledger (QEMU overhead included), wherever it is asked, and
// never to the witness; --host pins; a domain no host has room for is
// refused with every host's free figures, and nothing is made anywhere.
func TestClusterPlacement(t *testing.T) {
	_, envs := formClusterWitness(t, 3, true)
	a, b, c := envs[0], envs[1], envs[2]
	where := func(name string) string {
		var host string
		c.Await(name+" listed", 20*time.Second, func() bool {
			host = strings.Split(clusterList(c)[name], ":")[0]
			return host != ""
		})
		time.Sleep(3 * time.Second) // its host's free figures follow (published every 2 s)
		return host
	}
	// Equal hosts: the first by name; then the next has the most room.
	c.MustRF("create", c.WriteConfig("p1", ""), "-p")
	if h := where("p1"); h != "alpha" || len(a.QEMUs()) != 1 || len(c.QEMUs()) != 0 {
		t.Fatalf("p1 went to %s (QEMUs: alpha %d, gamma %d), want alpha", h, len(a.QEMUs()), len(c.QEMUs()))
	}
	c.MustRF("create", c.WriteConfig("p2", ""), "-p")
	if h := where("p2"); h != "beta" || len(b.QEMUs()) != 1 {
		t.Fatalf("p2 went to %s, want beta (alpha holds p1)", h)
	}
	// The witness is never chosen, whatever its room.
	c.MustRF("create", c.WriteConfig("p3", ""), "-p")
	if h := where("p3"); h == "gamma" || len(c.QEMUs()) != 0 {
		t.Fatalf("p3 went to the witness")
	}
	// --host pins, even onto the fullest host.
	b.MustRF("create", b.WriteConfig("p4", ""), "-p", "--host", "alpha")
	if h := where("p4"); h != "alpha" {
		t.Fatalf("p4 pinned to alpha went to %s", h)
	}

	// Bad input: nothing made anywhere.
	before := len(c.List())
	r := c.RF("create", c.WriteConfig("huge", "memory = 4000000\nmaxmem = 4000000"))
	if r.Code == 0 || !strings.Contains(r.Stderr, "no host of the cluster has room for huge") {
		t.Errorf("a domain no host has room for: %+v", r)
	}
	if !strings.Contains(r.Stderr, "gamma witness") {
		t.Errorf("the refusal does not say gamma is a witness: %s", r.Stderr)
	}
	for _, h := range []string{"alpha ", "beta "} {
		if !strings.Contains(r.Stderr, h) || !strings.Contains(r.Stderr, "MiB") {
			t.Errorf("the refusal does not give %sfree figures: %s", h, r.Stderr)
		}
	}
	refused(t, c, `--host "gamma" is the cluster's witness`, "create", c.WriteConfig("p6", ""), "--host", "gamma")
	refused(t, c, `--host "nowhere" is not a host of this cluster`, "create", c.WriteConfig("p5", ""), "--host", "nowhere")
	if after := len(c.List()); after != before {
		t.Errorf("refused creates changed the cluster's list: %d domains, were %d", after, before)
	}
	for _, e := range envs {
		for _, n := range []string{"p1", "p2", "p3", "p4"} {
			e.RF("destroy", n)
		}
	}
}

// TestClusterEvacuate: `host evacuate` live-migrates every domain off a
// host (in parallel, each to the host with room) and excludes it from
// placement; the last host that can run domains is never evacuated;
// `host resume` brings a host back.
func TestClusterEvacuate(t *testing.T) {
	_, envs := formCluster(t, 3)
	a, b, c := envs[0], envs[1], envs[2]
	bootOn(a, "alpha", "g1")
	// p2 ran (a QEMU that never ran has no state to migrate), now paused.
	a.MustRF("create", a.WriteConfig("p2", ""), "-p", "--host", "alpha")
	a.MustRF("unpause", "p2")
	a.MustRF("pause", "p2")
	c.Await("both on alpha", 20*time.Second, func() bool {
		l := clusterList(c)
		return strings.HasPrefix(l["g1"], "alpha:") && strings.HasPrefix(l["p2"], "alpha:")
	})

	refused(t, b, `"nowhere" is not a host of this cluster`, "host", "evacuate", "nowhere")
	// From beta: the evacuation runs on alpha.
	out := b.MustRF("host", "evacuate", "alpha", "--parallel", "2")
	if !strings.Contains(out, "g1 -> ") || !strings.Contains(out, "p2 -> ") {
		t.Fatalf("evacuate said:\n%s", out)
	}
	if q := a.QEMUs(); len(q) != 0 {
		t.Fatalf("alpha still runs QEMUs after its evacuation: %v", q)
	}
	if n := len(b.QEMUs()) + len(c.QEMUs()); n != 2 {
		t.Fatalf("%d QEMUs on beta and gamma after the evacuation, want 2", n)
	}
	var moved api.Domain
	for _, e := range []*Env{b, c} {
		if d, err := e.Client.Get(t.Context(), "g1"); err == nil && d.PID != 0 {
			moved = d
		}
	}
	if moved.State != api.StateRunning && moved.State != api.StateBlocked {
		t.Fatalf("g1 after the evacuation: %+v", moved)
	}
	for _, h := range clusterStatus(t, b).Hosts {
		if h.Excluded != (h.Name == "alpha") {
			t.Errorf("after evacuating alpha, %s excluded=%v", h.Name, h.Excluded)
		}
	}
	// An excluded host takes no new domain, even with the most room.
	time.Sleep(3 * time.Second) // the hosts' free figures follow
	b.MustRF("create", b.WriteConfig("p3", ""), "-p")
	c.Await("p3 listed", 20*time.Second, func() bool { _, ok := clusterList(c)["p3"]; return ok })
	if strings.HasPrefix(clusterList(c)["p3"], "alpha:") {
		t.Fatal("p3 was placed on evacuated alpha")
	}

	// beta next; then gamma is the last host that can run domains.
	c.MustRF("host", "evacuate", "beta")
	if q := b.QEMUs(); len(q) != 0 {
		t.Fatalf("beta still runs QEMUs after its evacuation: %v", q)
	}
	before := len(c.QEMUs())
	refused(t, a, "gamma is the last host of the cluster that can run domains", "host", "evacuate", "gamma")
	if len(c.QEMUs()) != before {
		t.Fatal("a refused evacuation moved something")
	}
	a.MustRF("host", "resume", "alpha")
	for _, h := range clusterStatus(t, c).Hosts {
		if h.Name == "alpha" && h.Excluded {
			t.Error("alpha is still excluded after host resume")
		}
	}
	for _, n := range []string{"g1", "p2", "p3"} {
		c.RF("destroy", n)
	}
}

// bootOn creates a domain pinned to host (a create in a cluster is
// placed) from e, and waits for its ready line.
func bootOn(e *Env, host, name string) {
	e.t.Helper()
	e.MustRF("create", e.WriteConfig(name, ""), "--host", host)
	e.Console(name).WaitFor(image.ReadyLine, 0, 90*time.Second)
}
