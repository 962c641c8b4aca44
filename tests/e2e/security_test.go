package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// TestNameInjection: a name that is not a name never becomes another
// route. Every verb that takes a name refuses these, and g1 is untouched
// (the review's `pause 'g1/destroy?'` destroyed it).
func TestNameInjection(t *testing.T) {
	e := NewEnv(t)
	e.Boot("g1", "")
	pid := e.Domain("g1").PID
	bad := []string{"g1/destroy?", "g1/pause#", "../domains/g1", "..", "g1\r\nX-Evil: 1", "g1/../g1", "g1%2fdestroy", "g1?x=1"}
	verbs := [][]string{
		{"pause", "%s"}, {"unpause", "%s"}, {"destroy", "%s"}, {"shutdown", "%s"}, {"reboot", "%s"},
		{"mem-set", "%s", "64m"}, {"mem-max", "%s", "64m"}, {"sched-credit", "-d", "%s", "-w", "512"},
		{"vcpu-pin", "%s", "all", "0"}, {"save", "%s", "/tmp/x.save"}, {"migrate", "%s", "127.0.0.1:1"},
		{"migrate", "--cancel", "%s"}, {"block-attach", "%s", "/tmp/x.img,xvdb,w"}, {"block-detach", "%s", "xvdb"},
		{"block-list", "%s"}, {"cd-insert", "%s", "hdc", "/tmp/x.iso"}, {"cd-eject", "%s", "hdc"},
		{"network-attach", "%s"}, {"network-detach", "%s", "0"}, {"network-list", "%s"},
		{"clone", "%s", "g2"}, {"clone", "g1", "%s"}, {"snapshot", "create", "%s", "s1"}, {"snapshot", "create", "g1", "%s"},
		{"snapshot", "list", "%s"}, {"snapshot", "revert", "g1", "%s"}, {"snapshot", "delete", "g1", "%s"},
		{"export", "%s", "-o", "/tmp/x.rfx"}, {"config", "export", "%s"}, {"console", "%s"},
		{"pool", "delete", "%s"}, {"volume", "list", "%s"}, {"volume", "delete", "p", "%s"},
		{"network", "show", "%s"}, {"network", "delete", "%s"}, {"network", "leases", "%s"},
		{"host", "revoke", "%s"},
	}
	for _, v := range verbs {
		for _, name := range bad {
			args := make([]string, len(v))
			for i, a := range v {
				args[i] = strings.ReplaceAll(a, "%s", name)
			}
			r := e.RF(args...)
			if r.Code == 0 {
				t.Errorf("ringfence %q: exit 0 (%s)", args, r.Stdout)
				continue
			}
			if !strings.Contains(r.Stderr, "not a valid") && !strings.Contains(r.Stderr, "no ") && !strings.Contains(r.Stderr, "not found") {
				t.Errorf("ringfence %q: %q, want a name error", args, r.Stderr)
			}
			if strings.Contains(r.Stderr, "\r\n") {
				t.Errorf("ringfence %q: a raw CR LF in the error", args)
			}
		}
	}
	if d := e.Domain("g1"); d.PID != pid || d.State == api.StatePaused {
		t.Fatalf("g1 was touched by a bad name: pid %d (was %d), state %s", d.PID, pid, d.State)
	}
	if len(e.List()) != 1 {
		t.Fatalf("domains: %v", e.List())
	}
}

// TestSafeFiles: files written for users are new root-only files, never
// a symlink's target or someone else's file (save, export).
func TestSafeFiles(t *testing.T) {
	e := NewEnv(t)
	e.Boot("g1", "")
	dir := filepath.Join(e.Dir, "out")
	os.MkdirAll(dir, 0o777)
	os.Chmod(dir, 0o1777) // like /tmp: anyone may plant files
	victim := filepath.Join(e.Dir, "victim")
	os.WriteFile(victim, []byte("root's file"), 0o600)
	nobody := 65534
	for _, tc := range []struct{ verb, file string }{{"save", "g1.save"}, {"export", "g1.rfx"}} {
		target := filepath.Join(dir, tc.file)
		// A symlink at the old temporary name, and a pre-made file anyone
		// can read at a second guess.
		os.Symlink(victim, target+".part")
		os.Lchown(target+".part", nobody, nobody)
		pre := filepath.Join(dir, "."+tc.file+".part")
		os.WriteFile(pre, nil, 0o666)
		os.Chown(pre, nobody, nobody)
		os.Chmod(pre, 0o666)
		var r Result
		if tc.verb == "save" {
			r = e.RF("save", "-c", "g1", target)
		} else {
			r = e.RF("export", "g1", "-o", target)
		}
		if r.Code != 0 {
			t.Fatalf("%s: %+v", tc.verb, r)
		}
		if b, _ := os.ReadFile(victim); string(b) != "root's file" {
			t.Fatalf("%s wrote through a planted symlink: %q", tc.verb, b)
		}
		if fi, _ := os.Stat(pre); fi.Size() != 0 {
			t.Fatalf("%s wrote into a pre-made file", tc.verb)
		}
		fi, err := os.Lstat(target)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Fatalf("%s: target %v (%v), want a regular root-owned 0600 file", tc.verb, fi.Mode(), err)
		}
	}
	// A symlink at the target itself is replaced, not followed.
	link := filepath.Join(dir, "link.save")
	os.Symlink(victim, link)
	e.MustRF("save", "-c", "g1", link)
	if b, _ := os.ReadFile(victim); string(b) != "root's file" {
		t.Fatal("save followed a symlink at the target")
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink != 0 {
		t.Fatal("the symlink is still there")
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, ".*.part")); len(ents) != 2 {
		t.Fatalf("temporary files left behind: %v", ents)
	}
}

// TestDiskPolicy: what may never become a guest's disk, boot file or
// pool, whoever asks; and the run dir of another daemon.
func TestDiskPolicy(t *testing.T) {
	e := NewEnv(t)
	// A mounted filesystem on a loop device, and a partitioned one whose
	// partition is mounted.
	img := filepath.Join(e.Dir, "fs.img")
	mustRun(t, "truncate", "-s", "64M", img)
	mustRun(t, "mkfs.ext4", "-q", img)
	loop := strings.TrimSpace(mustRun(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	mnt := filepath.Join(e.Dir, "mnt")
	os.Mkdir(mnt, 0o700)
	mustRun(t, "mount", loop, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	// A partitioned loop device whose partition is mounted (skipped on a
	// kernel without partition tables, like this CI's; the unit test
	// TestPolicyBlockDevices covers the rule with a fixture sysfs).
	part := filepath.Join(e.Dir, "part.img")
	mustRun(t, "truncate", "-s", "64M", part)
	writeMBR(t, part, 64<<20)
	ploop := strings.TrimSpace(mustRun(t, "losetup", "--find", "--show", "--partscan", part))
	t.Cleanup(func() { exec.Command("losetup", "-d", ploop).Run() })
	sysp := "/sys/class/block/" + filepath.Base(ploop) + "p1/dev"
	partitions := false
	for i := 0; i < 20 && !partitions; i++ {
		_, err := os.Stat(sysp)
		partitions = err == nil
		time.Sleep(100 * time.Millisecond)
	}
	pmnt := filepath.Join(e.Dir, "pmnt")
	if partitions {
		// No udev here: the kernel makes the partition, the test its node.
		if _, err := os.Stat(ploop + "p1"); err != nil {
			b, _ := os.ReadFile(sysp)
			mm := strings.Split(strings.TrimSpace(string(b)), ":")
			mustRun(t, "mknod", ploop+"p1", "b", mm[0], mm[1])
			t.Cleanup(func() { os.Remove(ploop + "p1") })
		}
		mustRun(t, "mkfs.ext4", "-q", ploop+"p1")
		os.Mkdir(pmnt, 0o700)
		mustRun(t, "mount", ploop+"p1", pmnt)
		t.Cleanup(func() { exec.Command("umount", pmnt).Run() })
	} else {
		t.Log("this kernel makes no partitions of a loop device: the mounted-partition case is covered by the unit test only")
	}
	// A loop device on the daemon's own store.
	stloop := strings.TrimSpace(mustRun(t, "losetup", "--find", "--show", "--read-only", filepath.Join(e.State, "state.db")))
	t.Cleanup(func() { exec.Command("losetup", "-d", stloop).Run() })
	// An image a bare QEMU writes (QEMU's own locks).
	held := filepath.Join(e.Dir, "held.img")
	mustRun(t, "truncate", "-s", "16M", held)
	qpid := filepath.Join(e.Dir, "q.pid")
	mustRun(t, "qemu-system-x86_64", "-machine", "q35,accel=tcg", "-nodefaults", "-display", "none", "-S", "-daemonize", "-pidfile", qpid,
		"-drive", "file="+held+",format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0")
	t.Cleanup(func() {
		b, _ := os.ReadFile(qpid)
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n > 0 {
			syscall.Kill(n, syscall.SIGKILL)
		}
	})
	cases := []struct {
		what, cfg string
		want      []string
	}{
		{"/etc/shadow as a disk", "disk = [ 'file:/etc/shadow,xvda,w' ]", []string{"/etc/shadow", "inside /etc"}},
		{"/etc/shadow read-only", "disk = [ 'file:/etc/shadow,xvda,r' ]", []string{"inside /etc"}},
		{"the store", "disk = [ 'file:" + filepath.Join(e.State, "state.db") + ",xvda,w' ]", []string{"Ringfence's own state"}},
		{"the run dir", "disk = [ 'file:" + filepath.Join(e.Dir, "run", "daemon.lock") + ",xvda,w' ]", []string{"run dir"}},
		{"a mounted device", "disk = [ 'phy:" + loop + ",xvda,w' ]", []string{"mounted on " + mnt}},
		{"a loop device on the store", "disk = [ 'phy:" + stloop + ",xvda,r' ]", []string{"loop device on", "Ringfence's own state"}},
		{"an image a QEMU writes", "disk = [ 'file:" + held + ",xvda,r' ]", []string{"open for write in another process"}},
		{"a device node", "disk = [ 'phy:/dev/null,xvda,w' ]", []string{"not a regular file or block device"}},
		{"a kernel in /etc", "kernel = '/etc/passwd'", []string{"boot file /etc/passwd", "inside /etc"}},
	}
	if partitions {
		cases = append(cases, struct {
			what, cfg string
			want      []string
		}{"a disk holding a mounted partition", "disk = [ 'phy:" + ploop + ",xvda,w' ]", []string{"holds " + ploop + "p1", "mounted on " + pmnt}})
	}
	for _, c := range cases {
		p := e.WriteConfig("pol", c.cfg)
		if c.what == "a kernel in /etc" {
			b, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(b, []byte("kernel = \""+imgPaths.Kernel+"\""), []byte("kernel = '/etc/passwd'"), 1), 0o644)
		}
		r := e.RF("create", p)
		if r.Code == 0 {
			t.Errorf("%s: accepted", c.what)
			e.RF("destroy", "pol")
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(r.Stderr, w) {
				t.Errorf("%s: %q, want %q", c.what, r.Stderr, w)
			}
		}
	}
	// The same rules through block-attach, cd-insert and pools.
	e.Boot("g1", "hotplug_slots = 1\ndisk = [ ',hdc:cdrom,r' ]")
	if r := e.RF("block-attach", "g1", "phy:"+loop+",xvdb,w"); r.Code == 0 || !strings.Contains(r.Stderr, "mounted on") {
		t.Errorf("block-attach of a mounted device: %+v", r)
	}
	if r := e.RF("cd-insert", "g1", "hdc", "/etc/shadow"); r.Code == 0 || !strings.Contains(r.Stderr, "inside /etc") {
		t.Errorf("cd-insert of /etc/shadow: %+v", r)
	}
	for _, dir := range []string{"/etc", "/", e.State, filepath.Join(e.Dir, "run")} {
		if r := e.RF("pool", "create", "p", "--dir", dir); r.Code == 0 || !strings.Contains(r.Stderr, "refused") && !strings.Contains(r.Stderr, "cannot be /") {
			t.Errorf("pool on %s: %+v", dir, r)
		}
	}
	if out := e.MustRF("pool", "list"); strings.Contains(out, " p ") {
		t.Errorf("a refused pool exists:\n%s", out)
	}
	// Another daemon's image: a second daemon cannot write what g2 here
	// writes; the kernel refuses to mount a device a guest writes.
	shared := filepath.Join(e.Dir, "shared.img")
	mustRun(t, "cp", "--sparse=always", imgPaths.Disk, shared)
	e.Boot("g2", "disk = [ 'file:"+shared+",xvda,w' ]")
	other := NewEnvWith(t, EnvOptions{Netns: e.Netns})
	if r := other.RF("create", other.WriteConfig("thief", "disk = [ 'file:"+shared+",xvda,r' ]")); r.Code == 0 || !strings.Contains(r.Stderr, "open for write in another process") {
		t.Errorf("another daemon reading an image g2 writes: %+v", r)
	}
	// A run dir in use by another daemon: refused at start, guests untouched.
	pid := e.Domain("g2").PID
	out, err := exec.Command("nsenter", "--net=/run/netns/"+e.Netns, binPath, "--socket", filepath.Join(other.Dir, "x.sock"), "serve",
		"--state-dir", filepath.Join(other.Dir, "state2"), "--run-dir", filepath.Join(e.Dir, "run")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is in use by another ringfence daemon") {
		t.Errorf("a daemon on another's run dir: %v\n%s", err, out)
	}
	if d := e.Domain("g2"); d.PID != pid {
		t.Fatal("g2 was touched by a daemon refused at start")
	}
	// --disk-roots limits files (not block devices) to chosen directories.
	allowed := filepath.Join(e.Dir, "allowed")
	os.Mkdir(allowed, 0o700)
	rooted := NewEnvWith(t, EnvOptions{Netns: e.Netns, ServeArgs: []string{"--disk-roots", allowed + "," + filepath.Dir(imgPaths.Kernel)}})
	outside := filepath.Join(e.Dir, "outside.img")
	mustRun(t, "truncate", "-s", "16M", outside)
	if r := rooted.RF("create", rooted.WriteConfig("out", "disk = [ 'file:"+outside+",xvda,w' ]")); r.Code == 0 || !strings.Contains(r.Stderr, "--disk-roots") {
		t.Errorf("a disk outside --disk-roots: %+v", r)
	}
	inside := filepath.Join(allowed, "in.img")
	mustRun(t, "truncate", "-s", "16M", inside)
	rooted.MustRF("create", rooted.WriteConfig("in", "disk = [ 'file:"+inside+",xvda,w' ]"))
}

// writeMBR gives an image of size bytes a DOS partition table with one
// Linux partition from sector 2048 to the end (what sfdisk would write).
func writeMBR(t *testing.T, path string, size int64) {
	t.Helper()
	mbr := make([]byte, 512)
	e := mbr[446:462]
	e[4] = 0x83 // Linux
	start, count := uint32(2048), uint32(size/512-2048)
	for i := 0; i < 4; i++ {
		e[8+i] = byte(start >> (8 * i))
		e[12+i] = byte(count >> (8 * i))
	}
	mbr[510], mbr[511] = 0x55, 0xaa
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
}

// TestQEMUIsolation: each QEMU runs under its own uid from the reserved
// range, with no new privileges and its seccomp filter; one cannot signal
// another; it holds no descriptor of the daemon's.
func TestQEMUIsolation(t *testing.T) {
	e := NewEnv(t)
	e.Boot("a", "")
	e.Boot("b", "")
	da, db := e.Domain("a"), e.Domain("b")
	status := func(pid int) map[string]string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok {
				out[k] = strings.TrimSpace(v)
			}
		}
		return out
	}
	sa, sb := status(da.PID), status(db.PID)
	uidA, uidB := strings.Fields(sa["Uid"])[0], strings.Fields(sb["Uid"])[0]
	if uidA == uidB || !strings.HasPrefix(uidA, "20000") || !strings.HasPrefix(uidB, "20000") {
		t.Fatalf("QEMU uids %s and %s: want two distinct ids from the reserved range", uidA, uidB)
	}
	for _, s := range []map[string]string{sa, sb} {
		if s["NoNewPrivs"] != "1" || s["Seccomp"] != "2" || strings.Fields(s["Uid"])[0] != strings.Fields(s["Gid"])[0] || s["CapEff"] != "0000000000000000" {
			t.Errorf("QEMU status: NoNewPrivs %s Seccomp %s Uid %s Gid %s CapEff %s", s["NoNewPrivs"], s["Seccomp"], s["Uid"], s["Gid"], s["CapEff"])
		}
	}
	// As a's QEMU would: signal b's (refused), and its own (allowed).
	as := func(uid string, target int) error {
		return exec.Command("setpriv", "--reuid="+uid, "--regid="+uid, "--clear-groups", "kill", "-0", strconv.Itoa(target)).Run()
	}
	if err := as(uidA, db.PID); err == nil {
		t.Fatal("a's uid can signal b's QEMU")
	}
	if err := as(uidA, da.PID); err != nil {
		t.Fatalf("a's uid cannot signal its own QEMU (the check is blind): %v", err)
	}
	// No descriptor of the daemon's state, keys, socket or another domain.
	for _, d := range []api.Domain{da, db} {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.PID))
		for _, ent := range ents {
			target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", d.PID, ent.Name()))
			other, otherLog := "/domains/a/", "/log/a/"
			if d.Spec.Name == "a" {
				other, otherLog = "/domains/b/", "/log/b/"
			}
			// Its own qemu.log (its stderr, opened for it) is the one file
			// of the state dir it may hold.
			own := target == filepath.Join(e.State, "log", d.Spec.Name, "qemu.log")
			if strings.HasPrefix(target, e.State) && !own || strings.Contains(target, "ringfence.sock") || strings.Contains(target, other) || strings.Contains(target, otherLog) || strings.Contains(target, "daemon.lock") {
				t.Errorf("QEMU of %s holds %s", d.Spec.Name, target)
			}
		}
	}
	// Its run dir is not its own to write (root's, 0700).
	fi, _ := os.Stat(filepath.Join(e.Dir, "run", "domains", "a"))
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o700 {
		t.Errorf("run dir of a: uid %d mode %v", st.Uid, fi.Mode())
	}
	// A restarted domain's QEMU gets a uid again, never one in use.
	e.MustRF("reboot", "a")
	e.Await("a to restart", 30*time.Second, func() bool { d := e.Domain("a"); return d.PID != 0 && d.PID != da.PID })
	if u := strings.Fields(status(e.Domain("a").PID)["Uid"])[0]; u == uidB {
		t.Fatalf("a's new QEMU shares b's uid %s", u)
	}
}

// TestAPIValidation: the JSON API refuses what the domain file parser
// refuses, with a 400 naming the field, before anything is touched.
func TestAPIValidation(t *testing.T) {
	e := NewEnv(t)
	base := func() map[string]any {
		return map[string]any{"name": "v", "kernel": imgPaths.Kernel, "ramdisk": imgPaths.Initrd, "memory_mib": 128}
	}
	cases := []struct {
		field string
		set   func(m map[string]any)
	}{
		{"memory_mib", func(m map[string]any) { m["memory_mib"] = -5 }},
		{"maxmem_mib", func(m map[string]any) { m["maxmem_mib"] = 1 << 30 }},
		{"vcpus", func(m map[string]any) { m["vcpus"] = -1 }},
		{"cpu_weight", func(m map[string]any) { m["cpu_weight"] = 70000 }},
		{"cap", func(m map[string]any) { m["cap"] = -1 }},
		{"hotplug_slots", func(m map[string]any) { m["hotplug_slots"] = 9 }},
		{"accel", func(m map[string]any) { m["accel"] = "xen" }},
		{"on_crash", func(m map[string]any) { m["on_crash"] = "explode" }},
		{"disks[0].iops", func(m map[string]any) {
			m["disks"] = []map[string]any{{"target": imgPaths.Disk, "vdev": "xvda", "iops": -1}}
		}},
		{"disks[0].bps", func(m map[string]any) {
			m["disks"] = []map[string]any{{"target": imgPaths.Disk, "vdev": "xvda", "bps": -1}}
		}},
		{"disks[0].vdev", func(m map[string]any) { m["disks"] = []map[string]any{{"target": imgPaths.Disk, "vdev": "x y"}} }},
		{"vifs[0].vifname", func(m map[string]any) { m["vifs"] = []map[string]any{{"vifname": "a b;c"}} }},
		{"vifs[0].rate_bytes", func(m map[string]any) { m["vifs"] = []map[string]any{{"rate_bytes": -1}} }},
		{"vifs[0].ip", func(m map[string]any) { m["vifs"] = []map[string]any{{"ip": []string{"10.0.0.300"}}} }},
		{"spec.bogus", func(m map[string]any) { m["bogus"] = 1 }},
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", e.Socket)
	}}}
	post := func(body []byte) (int, string) {
		resp, err := hc.Post("http://x"+api.Version+"/domains", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	for _, c := range cases {
		m := base()
		c.set(m)
		body, _ := json.Marshal(map[string]any{"spec": m})
		code, out := post(body)
		want := c.field
		if c.field == "spec.bogus" {
			want = "bogus"
		}
		if code != http.StatusBadRequest || !strings.Contains(out, want) {
			t.Errorf("%s: %d %s", c.field, code, out)
		}
	}
	if code, out := post(bytes.Repeat([]byte(" "), 5<<20)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d %s", code, out[:min(len(out), 200)])
	}
	if len(e.List()) != 0 || len(e.QEMUs()) != 0 {
		t.Fatal("a refused create left something")
	}
	if ents, _ := os.ReadDir(filepath.Join(e.Dir, "run", "domains")); len(ents) != 0 {
		t.Fatalf("run dirs left: %v", ents)
	}
}
