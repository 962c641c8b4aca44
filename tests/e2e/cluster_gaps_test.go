package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/etcdmember"
)

// awaitListed waits until e's cluster list has name on host ("" = not
// listed at all).
func awaitListed(e *Env, name, host string) {
	e.t.Helper()
	e.Await(name+" listed on "+host, 30*time.Second, func() bool {
		got := strings.Split(clusterList(e)[name], ":")[0]
		return got == host
	})
}

// TestClusterGapsNames: names are cluster-wide for every verb that makes
// a domain: restore, import and an incoming migration of a name another
// host has are refused with one clear error, and nothing is left on the
// refusing host (no domain, no QEMU, no imported files).
func TestClusterGapsNames(t *testing.T) {
	cn, envs := formCluster(t, 3)
	a, b, c := envs[0], envs[1], envs[2]

	// n1 is saved and exported on beta, then alpha takes the name.
	b.MustRF("create", b.WriteConfig("n1", ""), "-p", "--host", "beta")
	awaitListed(a, "n1", "beta")
	archive := filepath.Join(b.Dir, "n1.rfa")
	b.MustRF("export", "n1", "-o", archive)
	saved := filepath.Join(b.Dir, "n1.save")
	b.MustRF("save", "n1", saved)
	awaitListed(a, "n1", "")
	a.MustRF("create", a.WriteConfig("n1", ""), "-p", "--host", "alpha")
	awaitListed(b, "n1", "alpha")

	const clash = `domain "n1" is on host "alpha" of this cluster and names are cluster-wide`
	refused(t, b, clash, "restore", saved)
	imports := filepath.Join(b.Dir, "imports")
	os.MkdirAll(imports, 0o755)
	refused(t, b, clash, "import", archive, "--dir", imports)
	if left, _ := os.ReadDir(imports); len(left) != 0 {
		t.Errorf("a refused import left files in %s: %v", imports, left)
	}
	// Under another name the import is taken.
	b.MustRF("import", archive, "--dir", imports, "--name", "n2", "-p")
	awaitListed(a, "n2", "beta")

	// gamma leaves the cluster (it stays a trusted peer) and makes its
	// own n1: its migration to beta is refused, as alpha has the name.
	c.MustRF("cluster", "leave")
	c.MustRF("create", c.WriteConfig("n1", ""), "-p")
	refused(t, c, clash, "migrate", "n1", cn.addr(2)+":7443")
	if d := c.Domain("n1"); d.PID == 0 {
		t.Errorf("gamma's n1 after the refused migration: %+v", d)
	}

	// (a Get on beta would be forwarded to alpha: the list says whose)
	if l := clusterList(b)["n1"]; !strings.HasPrefix(l, "alpha:") {
		t.Errorf("n1 after the refusals is %q, want alpha's only", l)
	}
	if q := b.QEMUs(); len(q) != 1 {
		t.Errorf("beta runs %d QEMUs after the refusals, want 1 (n2's)", len(q))
	}
	for _, n := range []string{"n1", "n2"} {
		a.RF("destroy", n)
	}
	c.RF("destroy", "n1")
}

// etcdProbeEnv makes this test binary, re-run in a host's namespace, one
// etcd client: ENDPOINT,CERTKEY,CA; it exits 0 when a read succeeds.
const etcdProbeEnv = "RF_E2E_ETCD_PROBE"

func etcdProbe(spec string) int {
	p := strings.Split(spec, ",")
	cli, err := etcdmember.Dial([]string{p[0]}, etcdmember.Identity{CertKey: p[1], CA: p[2]})
	if err != nil {
		fmt.Println("dial:", err)
		return 1
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if _, err := cli.Get(ctx, "/ringfence/cluster/members/", clientv3.WithPrefix()); err != nil {
		fmt.Println("get:", err)
		return 1
	}
	fmt.Println("read ok")
	return 0
}

// etcdReads says whether a client with host from's certificate, run in
// host in's namespace, reads the etcd at endpoint; and what it said.
func etcdReads(t *testing.T, cn *clusterNet, in int, from *Env, endpoint string) (bool, string) {
	t.Helper()
	return etcdReadsWith(t, cn, in, filepath.Join(from.State, "tls", "host.pem"), filepath.Join(from.State, "tls", "ca.pem"), endpoint)
}

// etcdReadsWith is etcdReads with a certificate and key file of one's own.
func etcdReadsWith(t *testing.T, cn *clusterNet, in int, certKey, ca, endpoint string) (bool, string) {
	t.Helper()
	cmd := exec.Command("nsenter", "--net=/run/netns/"+cn.Hosts[in-1], os.Args[0])
	cmd.Env = append(os.Environ(), etcdProbeEnv+"="+endpoint+","+certKey+","+ca)
	out, err := cmd.CombinedOutput()
	return err == nil, string(out)
}

// TestClusterGapsRevokeLeave: four hosts, three etcd members and a
// client. A member that leaves hands its vote to the client (three
// members still); a member revoked with `host revoke` loses its etcd
// member, its records, and etcd access: its certificate is refused by
// every member, while another host's is taken. A renewed certificate's
// old serial is refused too.
func TestClusterGapsRevokeLeave(t *testing.T) {
	cn, envs := formCluster(t, 4)
	a, b, c, d := envs[0], envs[1], envs[2], envs[3]

	b.MustRF("cluster", "leave")
	awaitHosts(a, "alpha:member:true:true delta:member:true:true gamma:member:true:true", 90*time.Second)
	awaitHosts(d, "alpha:member:true:true delta:member:true:true gamma:member:true:true", 30*time.Second)

	// delta (now a member) renews its certificate: the old one is refused
	// by every member within a heartbeat, without a member restart (a
	// renewal is routine); the new one is taken, and delta stays a member.
	dtls := filepath.Join(d.State, "tls")
	oldCert := filepath.Join(d.Dir, "delta-old.pem")
	if b, err := os.ReadFile(filepath.Join(dtls, "host.pem")); err != nil || os.WriteFile(oldCert, b, 0o600) != nil {
		t.Fatalf("keeping delta's certificate: %v", err)
	}
	if ok, out := etcdReadsWith(t, cn, 4, oldCert, filepath.Join(dtls, "ca.pem"), "https://"+cn.addr(1)+":2379"); !ok {
		t.Fatalf("before the renewal delta's certificate is refused: %s", out)
	}
	d.MustRF("host", "renew")
	for _, i := range []int{1, 3, 4} {
		ep := "https://" + cn.addr(i) + ":2379"
		a.Await("delta's old certificate refused at "+ep, 15*time.Second, func() bool {
			ok, _ := etcdReadsWith(t, cn, 4, oldCert, filepath.Join(dtls, "ca.pem"), ep)
			return !ok
		})
		a.Await("delta's renewed certificate taken at "+ep, 30*time.Second, func() bool { ok, _ := etcdReads(t, cn, 4, d, ep); return ok })
	}
	awaitHosts(a, "alpha:member:true:true delta:member:true:true gamma:member:true:true", 30*time.Second)
	for _, e := range []*Env{a, c, d} {
		if strings.Contains(e.DaemonLog(), "etcd member restarted") {
			t.Errorf("a member restarted for a renewal:\n%s", tail(e.DaemonLog(), 2000))
		}
	}

	// gamma's domain and records go with it.
	c.MustRF("create", c.WriteConfig("r1", ""), "-p", "--host", "gamma")
	awaitListed(a, "r1", "gamma")
	ep := "https://" + cn.addr(1) + ":2379"
	if ok, out := etcdReads(t, cn, 3, c, ep); !ok {
		t.Fatalf("before the revocation gamma's certificate is refused by alpha's etcd: %s", out)
	}
	a.MustRF("host", "revoke", "gamma")
	awaitHosts(a, "alpha:member:true:true delta:member:true:true", 60*time.Second)
	awaitHosts(d, "alpha:member:true:true delta:member:true:true", 30*time.Second)
	if _, ok := clusterList(a)["r1"]; ok {
		t.Error("the revoked host's domain is still listed by the cluster")
	}
	// Refused by every remaining member within a heartbeat; delta's
	// certificate is taken.
	for _, i := range []int{1, 4} {
		ep := "https://" + cn.addr(i) + ":2379"
		a.Await("gamma refused at "+ep, 15*time.Second, func() bool { ok, _ := etcdReads(t, cn, 3, c, ep); return !ok })
		// (a read fails while the two members restart in turn: each
		// restart costs the pair its quorum for a moment)
		a.Await("delta's certificate taken at "+ep, 40*time.Second, func() bool { ok, _ := etcdReads(t, cn, 4, d, ep); return ok })
	}
	// The members restart one after the other (8 s apart), ending the
	// revoked host's open connections, and each sweeps the revoked
	// host's records again after its restart (what it published through
	// a connection still open meanwhile): its records stay gone.
	time.Sleep(20 * time.Second)
	awaitHosts(a, "alpha:member:true:true delta:member:true:true", 30*time.Second)
	for _, e := range []*Env{a, d} {
		if !strings.Contains(e.DaemonLog(), "etcd member restarted") {
			t.Errorf("a member did not restart after the revocation:\n%s", tail(e.DaemonLog(), 2000))
		}
	}
	time.Sleep(5 * time.Second) // gamma's daemon publishes every 2 s
	if _, ok := clusterList(d)["r1"]; ok {
		t.Error("the revoked host published its domain again")
	}
	refused(t, a, `not on the peer list`, "host", "revoke", "gamma")
	c.RF("destroy", "r1")
}

// hasDeclared says whether e lists a cluster-wide network and pool of
// those names.
func hasDeclared(e *Env, network, pool string) (bool, bool) {
	var nets []api.Network
	var pools []api.Pool
	json.Unmarshal([]byte(e.RF("network", "list", "--json").Stdout), &nets)
	json.Unmarshal([]byte(e.RF("pool", "list", "--json").Stdout), &pools)
	n := slices.ContainsFunc(nets, func(x api.Network) bool { return x.Name == network && x.Cluster })
	p := slices.ContainsFunc(pools, func(x api.Pool) bool { return x.Name == pool && x.Cluster })
	return n, p
}

// TestClusterGapsDeclared: a network and a pool declared cluster-wide
// are made on every host (the same bridge with the same uplink, the same
// shared path), on a host that joins later too; delete is refused while
// any host's domain uses them, then removes them everywhere.
func TestClusterGapsDeclared(t *testing.T) {
	cn, envs := formCluster(t, 3)
	a, b, c := envs[0], envs[1], envs[2]
	c.MustRF("cluster", "leave") // it joins again later
	for _, ns := range cn.Hosts {
		mustRun(t, "ip", "-n", ns, "link", "add", "up0", "type", "veth", "peer", "name", "up0p")
	}
	uplinked := func(i int) bool {
		out, _ := runOut("ip", "-n", cn.Hosts[i-1], "-o", "link", "show", "up0")
		return strings.Contains(out, "master rfclan")
	}
	shared := filepath.Join(a.Dir, "shared-pool")

	// Bad input: one clear error, nothing declared.
	refused(t, a, "a NAT network is private to its host", "network", "create", "nat1", "--cluster", "--nat", "--subnet", "10.99.0.0/24")
	refused(t, c, "this host is in no cluster", "pool", "create", "p0", "--cluster", "--dir", shared)
	refused(t, a, "does not exist", "network", "create", "bad", "--cluster", "--uplink", "nosuch0")

	a.MustRF("network", "create", "lan", "--cluster", "--bridge", "rfclan", "--uplink", "up0")
	a.MustRF("pool", "create", "shared", "--cluster", "--dir", shared)
	refused(t, b, `the cluster has a network named "lan" already`, "network", "create", "lan", "--cluster", "--bridge", "rfclan2")
	b.Await("lan and shared on beta", 20*time.Second, func() bool { n, p := hasDeclared(b, "lan", "shared"); return n && p && uplinked(2) })
	if !uplinked(1) {
		t.Error("alpha's up0 is not on the cluster network's bridge")
	}
	if n, _ := hasDeclared(b, "bad", ""); n {
		t.Error("a refused declaration reached beta")
	}
	if out := b.MustRF("network", "list"); !strings.Contains(out, "cluster") {
		t.Errorf("network list does not show the scope:\n%s", out)
	}

	// gamma joins again: it makes both.
	c.MustRF("cluster", "join")
	c.Await("lan and shared on gamma", 30*time.Second, func() bool { n, p := hasDeclared(c, "lan", "shared"); return n && p && uplinked(3) })
	if out := c.MustRF("pool", "list"); !strings.Contains(out, "cluster") || !strings.Contains(out, shared) {
		t.Errorf("pool list on gamma:\n%s", out)
	}

	// A domain on beta uses both: delete is refused from alpha.
	disk := filepath.Join(shared, "u1.raw")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := b.WriteConfig("u1", "vif = ['bridge=lan']\ndisk = ['"+disk+",raw,xvda,rw']")
	b.MustRF("create", cfg, "-p", "--host", "beta")
	awaitListed(a, "u1", "beta")
	refused(t, a, "in use by u1 on beta", "network", "delete", "lan")
	refused(t, a, "u1 on beta", "pool", "delete", "shared")
	for i, e := range envs {
		if n, p := hasDeclared(e, "lan", "shared"); !n || !p || !uplinked(i+1) {
			t.Errorf("a refused delete changed host %d: network %v, pool %v", i+1, n, p)
		}
	}

	a.MustRF("destroy", "u1")
	awaitListed(a, "u1", "")
	os.Remove(disk)
	a.MustRF("network", "delete", "lan")
	a.MustRF("pool", "delete", "shared")
	for i, e := range envs {
		e.Await("lan and shared gone", 20*time.Second, func() bool { n, p := hasDeclared(e, "lan", "shared"); return !n && !p })
		if out, _ := runOut("ip", "-n", cn.Hosts[i], "link", "show", "rfclan"); !strings.Contains(out, "does not exist") {
			t.Errorf("host %d still has the bridge: %s", i+1, out)
		}
	}
}

// TestClusterGapsStreams: a domain's streams work from any host of the
// cluster, relayed to the host that has it: the console (attached from
// two other hosts, typed into), the VNC display (RFB authentication with
// the right and a wrong password; a domain without one gets its owner's
// refusal), and an export streamed as a download, whole.
func TestClusterGapsStreams(t *testing.T) {
	_, envs := formCluster(t, 3)
	a, b, c := envs[0], envs[1], envs[2]
	bootOn(a, "beta", "g1") // its console is read from alpha
	c.Console("g1").Do("echo relayed-$((6*7))", "relayed-42", 60*time.Second)
	if len(a.QEMUs())+len(c.QEMUs()) != 0 || len(b.QEMUs()) != 1 {
		t.Fatal("the guest is not (only) on beta")
	}

	const pass = "rf-pw-42"
	a.MustRF("create", a.WriteConfig("vnc1", "type = 'hvm'\nvnc = 1\nvncpasswd = '"+pass+"'"), "-p", "--host", "beta")
	awaitListed(a, "vnc1", "beta")
	conn, err := a.Client.VNC(t.Context(), "vnc1")
	if err != nil {
		t.Fatalf("vnc from alpha: %v", err)
	}
	if err := rfbAuth(conn, pass); err != nil {
		t.Errorf("RFB through the relay with the right password: %v", err)
	}
	conn.Close()
	if conn, err = c.Client.VNC(t.Context(), "vnc1"); err != nil {
		t.Fatalf("vnc from gamma: %v", err)
	}
	if err := rfbAuth(conn, "wrong-pw"); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Errorf("a wrong VNC password through the relay: %v, want a refusal", err)
	}
	conn.Close()
	if _, err := a.Client.VNC(t.Context(), "g1"); err == nil || !strings.Contains(err.Error(), "vnc = 1") {
		t.Errorf("vnc of a domain with no display, from alpha: %v, want the owner's refusal", err)
	}

	// An export of beta's g1 downloaded from alpha, imported whole (its
	// members' checksums are checked) on gamma under another name.
	archive := filepath.Join(a.Dir, "g1-relayed.rfa")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	n, err := a.Client.ExportTo(t.Context(), "g1", f)
	f.Close()
	if err != nil || n == 0 {
		t.Fatalf("export download from alpha: %d bytes, %v", n, err)
	}
	c.MustRF("import", archive, "--name", "g2", "--no-start")
	for _, name := range []string{"g1", "vnc1"} {
		a.RF("destroy", name)
	}
}

// TestClusterGapsColdMoveImage: an evacuation moves domains created
// paused that never ran cold (a transient one and a defined one: each
// made paused on the target, the defined one defined there, nothing
// left here); create --image goes only to a host that has the image:
// placement picks it, --host elsewhere is refused naming where it is.
func TestClusterGapsColdMoveImage(t *testing.T) {
	_, envs := formCluster(t, 3)
	a, b, c := envs[0], envs[1], envs[2]
	a.MustRF("create", a.WriteConfig("p1", ""), "-p", "--host", "alpha")
	a.MustRF("define", a.WriteConfig("d1", ""))
	a.MustRF("start", "d1", "-p")
	awaitListed(c, "p1", "alpha")
	awaitListed(c, "d1", "alpha")

	out := b.MustRF("host", "evacuate", "alpha")
	if !strings.Contains(out, "p1 -> ") || !strings.Contains(out, "d1 -> ") {
		t.Fatalf("evacuate said:\n%s", out)
	}
	if q := a.QEMUs(); len(q) != 0 {
		t.Fatalf("alpha runs QEMUs after its evacuation: %v", q)
	}
	for _, name := range []string{"p1", "d1"} {
		l := clusterList(c)[name]
		if !strings.HasSuffix(l, ":paused") || strings.HasPrefix(l, "alpha:") {
			t.Errorf("%s after the evacuation: %q, want paused on beta or gamma", name, l)
		}
	}
	if d := c.Domain("d1"); !d.Defined {
		t.Errorf("d1 moved without its definition: %+v", d)
	}
	if l := clusterList(a)["d1"]; strings.HasPrefix(l, "alpha:") {
		t.Errorf("alpha kept d1 (its definition): %s", l)
	}
	if n := len(b.QEMUs()) + len(c.QEMUs()); n != 2 {
		t.Errorf("%d QEMUs on beta and gamma, want 2", n)
	}
	a.MustRF("host", "resume", "alpha")

	// The image is on beta only (its pool links the test image cache).
	linkImage(t, b)
	a.MustRF("network", "create", "lan", "--cluster", "--bridge", "rfclan")
	key := sshKey(t, a, "k1") + ".pub"
	imageArgs := func(name string, extra ...string) []string {
		return append([]string{"create", "--image", "debian-12", name, "--ssh-key", key, "--network", "lan", "--memory", "128", "-p"}, extra...)
	}
	// (beta publishes its images every 2 s)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Second) {
		r := a.RF(imageArgs("w0", "--host", "gamma")...)
		if strings.Contains(r.Stderr, "image debian-12 is not on host gamma: it is on beta") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("--host gamma without the image: %+v", r)
		}
	}
	r := c.RF("create", "--image", "debian-99", "w0", "--ssh-key", key, "-p")
	if r.Code == 0 || !strings.Contains(r.Stderr, "image debian-99 is on no host of the cluster") {
		t.Errorf("an image no host has: %+v", r)
	}
	// alpha has the most room, but only beta has the image.
	a.MustRF(imageArgs("w1")...)
	awaitListed(c, "w1", "beta")
	for _, n := range []string{"w1", "p1", "d1"} {
		a.RF("destroy", n)
	}
	a.RF("undefine", "d1")
}
