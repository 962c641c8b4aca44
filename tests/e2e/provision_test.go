package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// provisionCache keeps the built OS image between test runs (and CI
// runs on one machine): image build rebuilds it only when its recipe
// changes (its description, .images/debian-12.json, names the recipe).
func provisionCache() string {
	if d := os.Getenv("RINGFENCE_TEST_IMAGES"); d != "" {
		return d
	}
	return "/var/cache/ringfence-test/images"
}

// provisionEnv is a daemon with the debian-12 image built (or found
// built) in the cache pool and linked into a pool of the test's own, so
// the clones the test makes live and die in the test's directory.
func provisionEnv(t *testing.T) *Env {
	t.Helper()
	e := NewEnv(t, "--vcpu-ratio", "4")
	if err := os.MkdirAll(provisionCache(), 0o755); err != nil {
		t.Fatal(err)
	}
	buildImage(t, e)
	linkImage(t, e)
	return e
}

// buildImage builds (or finds built) the debian-12 image in the cache,
// through e's daemon.
func buildImage(t *testing.T, e *Env) {
	t.Helper()
	e.MustRF("pool", "create", "cache", "--dir", provisionCache())
	t0 := time.Now()
	r := e.RF("image", "build", "debian-12", "--pool", "cache")
	if r.Code != 0 {
		t.Fatalf("image build: %+v", r)
	}
	t.Logf("image build debian-12: %s (%s)", time.Since(t0).Round(time.Second), strings.TrimSpace(r.Stderr))
}

// linkImage links the cache's debian-12 image into a pool img of e's
// own, building it first when the cache lacks it (a test that runs
// before the provisioning tests on a fresh machine).
func linkImage(t *testing.T, e *Env) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(provisionCache(), ".images", "debian-12.json")); err != nil {
		if err := os.MkdirAll(provisionCache(), 0o755); err != nil {
			t.Fatal(err)
		}
		buildImage(t, e)
	}
	pool := filepath.Join(e.Dir, "pool")
	os.MkdirAll(filepath.Join(pool, ".images"), 0o755)
	for _, f := range []string{"debian-12.qcow2", ".images/debian-12.json", ".images/debian-12.vmlinuz", ".images/debian-12.initrd"} {
		if err := os.Link(filepath.Join(provisionCache(), f), filepath.Join(pool, f)); err != nil {
			t.Fatalf("%v (the image cache is built by the provisioning tests)", err)
		}
	}
	e.MustRF("pool", "create", "img", "--dir", pool)
}

// sshKey makes a key pair in the test's directory; it returns the
// private key's path (the public one is path.pub).
func sshKey(t *testing.T, e *Env, name string) string {
	t.Helper()
	p := filepath.Join(e.Dir, name)
	mustRun(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", p)
	return p
}

// ssh runs a command on addr as root with key, from the test's
// namespace.
func ssh(e *Env, key, addr, cmd string) (string, error) {
	out, err := exec.Command("ip", "netns", "exec", e.Netns, "ssh", "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@"+addr, cmd).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// mustSSH waits until ssh works (sshd may start after the agent), then
// returns the command's output.
func mustSSH(t *testing.T, e *Env, key, addr, cmd string) string {
	t.Helper()
	var out string
	e.Await("ssh root@"+addr, 180*time.Second, func() bool {
		var err error
		out, err = ssh(e, key, addr, cmd)
		return err == nil
	})
	return out
}

// poolFiles are the files a test's pool holds (what a refused create
// must not add to).
func poolFiles(t *testing.T, e *Env) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(e.Dir, "pool"))
	var out []string
	for _, en := range ents {
		out = append(out, en.Name())
	}
	return out
}

// TestProvisionBadInput: every bad input of create --image is one clear
// error, exits non-zero and leaves no domain and no file behind.
func TestProvisionBadInput(t *testing.T) {
	e := provisionEnv(t)
	e.MustRF("network", "create", "nat0", "--nat", "--subnet", "10.79.0.0/24")
	key := sshKey(t, e, "k1")
	before := poolFiles(t, e)
	os.WriteFile(filepath.Join(e.Dir, "notakey.pub"), []byte("hello\n"), 0o644)
	e.names = append(e.names, "bad")
	for _, c := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"--image", "debian-99", "bad", "--ssh-key", key + ".pub"}, "no image debian-99", 3},
		{[]string{"--image", "debian-12", "bad", "--ssh-key", filepath.Join(e.Dir, "missing.pub")}, "give a readable OpenSSH public key file", 1},
		{[]string{"--image", "debian-12", "bad", "--ssh-key", filepath.Join(e.Dir, "notakey.pub")}, "is not an OpenSSH public key", 1},
		{[]string{"--image", "debian-12", "bad"}, "needs --ssh-key", 2},
		{[]string{"--image", "debian-12", "--image-pool", "img", "bad", "--ssh-key", key + ".pub", "--network", "nat0", "--ip", "10.80.0.5"}, "not a guest address of network nat0", 1},
		{[]string{"--image", "debian-12", "--image-pool", "img", "bad", "--ssh-key", key + ".pub", "--disk-size", "1G"}, "smaller than image debian-12", 1},
		{[]string{"--image", "debian-12", "bad", "--ssh-key", key + ".pub", "--user-data", filepath.Join(e.Dir, "none.yaml")}, "--user-data", 1},
		{[]string{"--image", "debian-12", "bad", "--ssh-key", key + ".pub"}, "is in several pools", 1},
	} {
		r := e.RF(append([]string{"create"}, c.args...)...)
		if r.Code != c.code || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("create %v: exit %d %q, want exit %d and %q", c.args, r.Code, r.Stderr, c.code, c.want)
		}
	}
	// The same from a domain file: its keys reach the daemon, whose dry
	// run shows the clone, the seed, the image's kernel and the agent's
	// port, making nothing.
	pub, _ := os.ReadFile(key + ".pub")
	cfg := filepath.Join(e.Dir, "web.cfg")
	os.WriteFile(cfg, []byte("name = 'web'\nimage = 'debian-12'\nimage_pool = 'img'\ndisk_size = '8G'\nmemory = 512\n"+
		"ssh_authorized_keys = [ '"+strings.TrimSpace(string(pub))+"' ]\nvif = [ 'bridge=nat0,ip=10.79.0.20' ]\n"), 0o644)
	dry := e.MustRF("create", "--dry-run", cfg)
	for _, want := range []string{"web-disk.qcow2", "web-seed.iso", "debian-12.vmlinuz", "root=/dev/vda1", "org.qemu.guest_agent.0"} {
		if !strings.Contains(dry, want) {
			t.Errorf("create --dry-run of an image domain file lacks %q:\n%s", want, dry)
		}
	}
	if ds := e.List(); len(ds) != 0 {
		t.Errorf("refused creates left domains: %v", ds)
	}
	if after := poolFiles(t, e); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("refused creates left files in the pool: %v, was %v", after, before)
	}
	// The image cannot be deleted while a clone depends on it.
	e.MustRF("volume", "create", "img", "dep.qcow2", "--from", "debian-12.qcow2")
	if r := e.RF("image", "delete", "debian-12", "--pool", "img"); r.Code == 0 || !strings.Contains(r.Stderr, "template of dep.qcow2") {
		t.Errorf("image delete with a clone: %+v", r)
	}
	e.MustRF("volume", "delete", "img", "dep.qcow2")
	var ims []api.Image
	json.Unmarshal([]byte(e.MustRF("image", "list", "--json")), &ims)
	if len(ims) != 2 || ims[0].Name != "debian-12" || !strings.Contains(ims[0].OS, "Debian GNU/Linux 12") {
		t.Errorf("image list: %+v", ims)
	}
	e.MustRF("image", "delete", "debian-12", "--pool", "img")
	if out := e.MustRF("image", "list"); strings.Contains(out, "img") {
		t.Errorf("image list after delete:\n%s", out)
	}
}

// TestProvisionImageBuildFails: a build that fails half-way (an unknown
// package: debootstrap has begun) leaves nothing in the pool.
func TestProvisionImageBuildFails(t *testing.T) {
	e := NewEnv(t)
	pool := filepath.Join(e.Dir, "bpool")
	e.MustRF("pool", "create", "b", "--dir", pool)
	r := e.RF("image", "build", "debian-12", "--pool", "b", "--packages", "no-such-package-rf")
	if r.Code == 0 || !strings.Contains(r.Stderr, "building image debian-12 in pool b") {
		t.Fatalf("build with an unknown package: %+v", r)
	}
	var left []string
	filepath.Walk(pool, func(p string, fi os.FileInfo, err error) error {
		if err == nil && p != pool && fi.Name() != ".images" && fi.Name() != ".lock" {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("a failed build left %v", left)
	}
	if out := e.MustRF("image", "list"); strings.Count(out, "\n") != 1 {
		t.Errorf("image list after a failed build:\n%s", out)
	}
	for _, c := range []struct{ args []string }{
		{[]string{"image", "build", "debian-99", "--pool", "b"}},
		{[]string{"image", "build", "debian-12", "--pool", "nosuch"}},
		{[]string{"image", "build", "debian-12", "--pool", "b", "--size", "100M"}},
		{[]string{"image", "build", "debian-12", "--pool", "b", "--packages", "Bad;Name"}},
	} {
		if r := e.RF(c.args...); r.Code == 0 || r.Stderr == "" {
			t.Errorf("%v: %+v", c.args, r)
		}
	}
}

// TestProvisionServers: two servers from one image with their own keys
// and addresses, one booted directly, one through the firmware and the
// image's GRUB; ssh into both from the test's namespace; their addresses
// and OS through the guest agent; the root grown to the asked size; the
// guest's disk scheduler; exec and set-password; a snapshot while the
// guest writes (freeze and thaw in its journal); export, destroy, import
// and ssh into the copy; shutdown through the agent.
func TestProvisionServers(t *testing.T) {
	e := provisionEnv(t)
	e.MustRF("network", "create", "nat0", "--nat", "--subnet", "10.79.0.0/24")
	k1, k2 := sshKey(t, e, "k1"), sshKey(t, e, "k2")
	e.names = append(e.names, "vm1", "vm2")
	t0 := time.Now()
	e.MustRF("create", "--image", "debian-12", "vm1", "--image-pool", "img", "--ssh-key", k1+".pub", "--network", "nat0",
		"--ip", "10.79.0.10", "--disk-size", "5G", "--memory", "512")
	// -w waits for the agent longer than runCLI's cap: run it directly.
	w := exec.Command(binPath, "--socket", e.Socket, "create", "--image", "debian-12", "vm2", "--image-pool", "img", "--ssh-key", k2+".pub",
		"--network", "nat0", "--ip", "10.79.0.11", "--firmware", "--memory", "512", "-w", "--timeout", "900")
	if out, err := w.CombinedOutput(); err != nil || !strings.Contains(string(out), "vm2 is up (guest agent answered") {
		t.Fatalf("create -w vm2: %v\n%s\n%s", err, out, tail(e.DaemonLog(), 3000))
	}
	t.Logf("vm2 (firmware, GRUB): agent answered %s after the creates", time.Since(t0).Round(time.Second))
	if out := mustSSH(t, e, k2, "10.79.0.11", "hostname"); out != "vm2" {
		t.Errorf("vm2's hostname: %q", out)
	}
	e.Await("vm1's guest agent", 600*time.Second, func() bool { return e.RF("exec", "vm1", "--", "true").Code == 0 })
	if out := mustSSH(t, e, k1, "10.79.0.10", "hostname"); out != "vm1" {
		t.Errorf("vm1's hostname: %q", out)
	}
	t.Logf("both servers answer ssh %s after the creates", time.Since(t0).Round(time.Second))
	if out, err := ssh(e, k2, "10.79.0.10", "true"); err == nil {
		t.Errorf("vm2's key logs in to vm1: %s", out)
	}

	// What the agent says: the address cloud-init set, the OS.
	info := e.MustRF("info", "vm1")
	if !strings.Contains(info, "10.79.0.10/24") || !strings.Contains(info, "Debian GNU/Linux 12") {
		t.Errorf("info vm1 does not show the guest's address and OS:\n%s", info)
	}
	var long []struct {
		Config api.DomainSpec
		Guest  *api.GuestInfo
	}
	json.Unmarshal([]byte(e.MustRF("list", "-l")), &long)
	for _, l := range long {
		if l.Guest == nil || !strings.Contains(strings.Join(nicAddrs(*l.Guest), " "), "10.79.0.1") {
			t.Errorf("list -l %s: guest %+v", l.Config.Name, l.Guest)
		}
	}

	// The root filesystem grew to the disk (5G), and the guest's disk
	// queue: non-rotational, no scheduler of its own.
	if out := mustSSH(t, e, k1, "10.79.0.10", "df -B1M --output=size / | tail -1"); atoiOr(out) < 4500 {
		t.Errorf("vm1's root is %s MiB, want ~5G (grown from the image's 4G)", out)
	}
	sched := mustSSH(t, e, k1, "10.79.0.10", "cat /sys/block/vda/queue/scheduler /sys/block/vda/queue/rotational")
	t.Logf("vm1: /sys/block/vda/queue/scheduler, rotational: %q", sched)
	if !strings.HasPrefix(sched, "[none]") || !strings.HasSuffix(sched, "0") {
		t.Errorf("vm1's vda queue: %q, want [none] and rotational 0", sched)
	}

	// exec and set-password, the rescue path.
	if out := e.MustRF("exec", "vm1", "--", "cat", "/etc/hostname"); strings.TrimSpace(out) != "vm1" {
		t.Errorf("exec: %q", out)
	}
	if r := e.RF("exec", "vm1", "--", "sh", "-c", "exit 3"); r.Code != 3 {
		t.Errorf("exec's exit status: %+v", r)
	}
	shadow := func() string { return mustSSH(t, e, k1, "10.79.0.10", "grep ^root: /etc/shadow | cut -d: -f2") }
	old := shadow()
	if r := runCLI(t, []string{"sh", "-c", "echo s3cret-pw | \"$0\" \"$@\""}, nil, "--socket", e.Socket, "set-password", "vm1", "root"); r.Code != 0 {
		t.Fatalf("set-password: %+v", r)
	}
	if now := shadow(); now == old || !strings.HasPrefix(now, "$") {
		t.Errorf("root's hash after set-password: %q (was %q)", now, old)
	}

	provisionSnapshotExport(t, e, k1)

	// Shutdown through the agent.
	e.MustRF("shutdown", "vm2", "-w", "--timeout", "300")
	if strings.Contains(e.DaemonLog(), "guest agent shutdown failed") {
		t.Errorf("vm2 was not shut down through its agent:\n%s", tail(e.DaemonLog(), 2000))
	}
}

// provisionSnapshotExport: a snapshot of vm1 while it writes, frozen and
// thawed by its agent; then vm1 exported, destroyed, imported and
// reached by ssh again.
func provisionSnapshotExport(t *testing.T, e *Env, key string) {
	mustSSH(t, e, key, "10.79.0.10", "nohup sh -c 'while :; do date >> /root/writes; done' >/dev/null 2>&1 &")
	e.MustRF("snapshot", "create", "vm1", "s1")
	j := mustSSH(t, e, key, "10.79.0.10", "journalctl --no-pager -t fsfreeze-hook -t qemu-ga | grep -E 'fsfreeze|filesystems'")
	if !strings.Contains(j, "filesystems: freeze") || !strings.Contains(j, "filesystems: thaw") {
		t.Errorf("the guest's journal shows no freeze and thaw around the snapshot:\n%s", j)
	}
	if n := mustSSH(t, e, key, "10.79.0.10", "wc -l < /root/writes"); atoiOr(n) == 0 {
		t.Errorf("the writer wrote nothing: %q", n)
	}
	archive := filepath.Join(e.Dir, "vm1.rfx")
	e.MustRF("export", "vm1", "-o", archive)
	e.MustRF("destroy", "vm1")
	e.MustRF("import", archive, "--dir", filepath.Join(e.Dir, "copy"))
	if out := mustSSH(t, e, key, "10.79.0.10", "hostname; test -s /root/writes && echo has-writes"); out != "vm1\nhas-writes" {
		t.Errorf("the imported copy: %q", out)
	}
}

func nicAddrs(g api.GuestInfo) []string {
	var out []string
	for _, n := range g.NICs {
		out = append(out, n.Addresses...)
	}
	return out
}

func atoiOr(s string) int {
	n := 0
	for _, c := range strings.TrimSpace(s) {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}
