package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// TestCrashLoopBrake: a guest that resets at boot (64 MiB is too little
// for the default kernel: it resets about three times a second) is
// restarted five times, then kept stopped with why and its console's last
// lines; `start` starts it again.
func TestCrashLoopBrake(t *testing.T) {
	e := NewEnv(t)
	p := e.WriteConfig("looper", "")
	b, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(b), "memory = 128", "memory = 64\nmaxmem = 64", 1)), 0o644)
	e.MustRF("create", p)
	var d api.Domain
	e.Await("the brake", 90*time.Second, func() bool {
		d = e.Domain("looper")
		return d.State == api.StateCrashed
	})
	if !strings.Contains(d.LastReason, "stopped restarting after 5 restarts") || !strings.Contains(d.LastReason, "ringfence start looper") {
		t.Fatalf("reason: %q", d.LastReason)
	}
	// The same brake for a guest that panics at boot and reboots (panic=-1):
	// its console's last lines, the panic, are kept.
	p2 := e.WriteConfig("panicky", "")
	b2, _ := os.ReadFile(p2)
	os.WriteFile(p2, []byte(strings.Replace(string(b2), `extra = "console=hvc0"`, `extra = "console=hvc0 rdinit=/nonexistent panic=-1"`, 1)), 0o644)
	e.MustRF("create", p2)
	var pd api.Domain
	e.Await("the brake on a panicking guest", 120*time.Second, func() bool {
		pd = e.Domain("panicky")
		return pd.State == api.StateCrashed
	})
	if last := strings.Join(pd.LastConsole, "\n"); !strings.Contains(last, "panic") {
		t.Fatalf("the console's last lines: %q", pd.LastConsole)
	}
	out := e.MustRF("list")
	if !strings.Contains(out, "looper stopped: stopped restarting") || !strings.Contains(out, "  | ") {
		t.Fatalf("list does not say why:\n%s", out)
	}
	if len(e.QEMUs()) != 0 {
		t.Fatal("a QEMU runs after the brake")
	}
	if !strings.Contains(e.DaemonLog(), "domain stopped restarting") {
		t.Error("the daemon log does not say it")
	}
	// Started again by hand, it loops again and is braked again.
	e.MustRF("start", "looper")
	e.Await("the brake again", 90*time.Second, func() bool { return e.Domain("looper").State == api.StateCrashed })
	if r := e.RF("start", "nosuch"); r.Code == 0 || !strings.Contains(r.Stderr, "no domain") {
		t.Errorf("start of an unknown domain: %+v", r)
	}
}

// TestOOMKillReported: a QEMU killed at its memory limit is never silent:
// the reason names the limit and the peak, in the domain's record, `list`
// and the daemon log (an overhead far too small forces it).
func TestOOMKillReported(t *testing.T) {
	e := NewEnv(t, "--qemu-overhead", "24")
	r := e.RF("create", e.WriteConfig("tight", "on_crash = 'preserve'"))
	var why string
	if r.Code != 0 {
		why = r.Stderr // killed while starting
	} else {
		e.Await("the OOM kill", 60*time.Second, func() bool { return e.Domain("tight").State == api.StateCrashed })
		why = e.Domain("tight").LastReason
		if out := e.MustRF("list"); !strings.Contains(out, "out of memory") {
			t.Errorf("list does not say it:\n%s", out)
		}
	}
	if !strings.Contains(why, "killed: out of memory (limit 152 MiB, peak ") || !strings.Contains(why, "--qemu-overhead") {
		t.Fatalf("reason: %q", why)
	}
	if !strings.Contains(e.DaemonLog(), "out of memory") {
		t.Error("the daemon log does not say it")
	}
}

// TestStoppedQEMU: a QEMU stopped with SIGSTOP never answers its monitor.
// No operation waits past the QMP deadline, a failed unpause leaves the
// domain paused, and destroy gets through while another operation holds
// the domain.
func TestStoppedQEMU(t *testing.T) {
	e := NewEnv(t, "--qmp-timeout", "2s")
	e.Boot("frozen", "")
	e.MustRF("pause", "frozen")
	pid := e.Domain("frozen").PID
	syscall.Kill(pid, syscall.SIGSTOP)
	defer syscall.Kill(pid, syscall.SIGCONT)
	t0 := time.Now()
	r := e.RF("unpause", "frozen")
	if r.Code == 0 || !strings.Contains(r.Stderr, "did not answer in time") || time.Since(t0) > 20*time.Second {
		t.Fatalf("unpause of a stopped QEMU: %+v after %s", r, time.Since(t0))
	}
	if d := e.Domain("frozen"); d.State != api.StatePaused {
		t.Fatalf("a failed unpause left it %s", d.State)
	}
	// Another operation holds the domain while destroy comes.
	held := make(chan Result, 1)
	go func() { held <- e.RF("mem-set", "frozen", "96m") }()
	time.Sleep(300 * time.Millisecond)
	t0 = time.Now()
	e.MustRF("destroy", "frozen")
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("destroy waited %s behind a stuck operation", took)
	}
	<-held
	if len(e.List()) != 0 || len(e.QEMUs()) != 0 {
		t.Fatal("the destroyed domain is still there")
	}
}

// TestRenameRestartFreeName: on_crash = rename-restart keeps the old
// incarnation under a free name; an existing domain is never overwritten.
// And a kernel path with a comma boots (QEMU takes -kernel raw).
func TestRenameRestartFreeName(t *testing.T) {
	e := NewEnv(t)
	dir := filepath.Join(e.Dir, "a,b=c")
	os.Mkdir(dir, 0o700)
	mustRun(t, "cp", imgPaths.Kernel, filepath.Join(dir, "vmlinuz"))
	p := e.WriteConfig("rr", "on_crash = 'rename-restart'")
	b, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(b), imgPaths.Kernel, filepath.Join(dir, "vmlinuz"), 1)), 0o644)
	e.MustRF("create", p)
	e.Console("rr").WaitFor("ringfence: guest ready", 0, 90*time.Second)
	// A domain already has the first incarnation's name.
	e.MustRF("create", "-p", e.WriteConfig("rr--incarnation-1", ""))
	squatter := e.Domain("rr--incarnation-1").PID
	first := e.Domain("rr").PID
	syscall.Kill(first, syscall.SIGKILL)
	e.Await("the restart", 60*time.Second, func() bool { d := e.Domain("rr"); return d.PID != 0 && d.PID != first })
	if d := e.Domain("rr--incarnation-1"); d.PID != squatter {
		t.Fatalf("the existing domain was overwritten (pid %d, was %d)", d.PID, squatter)
	}
	var kept api.Domain
	for _, d := range e.List() {
		if strings.HasPrefix(d.Spec.Name, "rr--incarnation-") && d.Spec.Name != "rr--incarnation-1" {
			kept = d
		}
	}
	if kept.Spec.Name != "rr--incarnation-2" || kept.State != api.StateCrashed {
		t.Fatalf("the old incarnation: %+v", kept)
	}
	e.names = append(e.names, kept.Spec.Name)
}

// TestCloneProtectsDisks: the clone-and-test sandbox the seeds describe,
// without corrupting anything. A refused clone changes nothing (the
// source is not moved); the clone gets its own address and settings; the
// frozen base is never written again, and the old domain file says which
// disk is the domain's now.
func TestCloneProtectsDisks(t *testing.T) {
	e := NewEnv(t, "--vcpu-ratio", "4")
	mustRun(t, "ip", "-n", e.Netns, "link", "add", "clbr0", "type", "bridge")
	dir := filepath.Join(e.Dir, "vm")
	os.Mkdir(dir, 0o700)
	disk := filepath.Join(dir, "root.img")
	mustRun(t, "cp", "--sparse=always", imgPaths.Disk, disk)
	web := `disk = [ 'file:` + disk + `,xvda,w' ]
vif = [ 'ip=10.9.0.5,bridge=clbr0' ]
on_poweroff = 'preserve'`
	cfg := e.WriteConfig("web01", web)
	c := e.Boot("web01", web)
	c.WaitFor("/dev/vda mounted on /mnt", 0, 10*time.Second)
	c.Send("echo original-data > /mnt/marker; sync; echo wrote-$((2*21))")
	c.WaitFor("wrote-42", 0, 10*time.Second)
	files := func() []string {
		ents, _ := os.ReadDir(dir)
		var n []string
		for _, x := range ents {
			n = append(n, x.Name())
		}
		return n
	}
	before := files()
	// Refused clones: the clone's vif would keep web01's address; a
	// setting out of range; more vCPUs than the host has. Nothing moves.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"clone", "web01", "web01-test"}, "ip=10.9.0.5 is already used by web01"},
		{[]string{"clone", "web01", "web01-test", "--set", "cpu_weight=70000"}, "cpu_weight"},
		{[]string{"clone", "web01", "web01-test", "--set", "vcpus=200", "--vif", "ip=10.9.0.6"}, "vCPU"},
		{[]string{"clone", "web01", "web01-test", "--set", "name=x"}, "not a setting a clone can change"},
	} {
		if r := e.RF(tc.args...); r.Code == 0 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("%v: %+v, want %q", tc.args, r, tc.want)
		}
	}
	if got := files(); strings.Join(got, ",") != strings.Join(before, ",") {
		t.Fatalf("refused clones made files: %v (was %v)", got, before)
	}
	if d := e.Domain("web01"); d.Spec.Disks[0].Target != disk {
		t.Fatalf("a refused clone moved web01 onto %s", d.Spec.Disks[0].Target)
	}
	// The clone: its own address and memory.
	e.MustRF("clone", "web01", "web01-test", "--vif", "ip=10.9.0.6", "--set", "memory=96")
	e.names = append(e.names, "web01-test")
	ct := e.Domain("web01-test")
	if ct.Spec.Vifs[0].IP[0] != "10.9.0.6" || ct.Spec.Vifs[0].Bridge != "clbr0" || ct.Spec.MemoryMiB != 96 {
		t.Fatalf("the clone: %+v", ct.Spec)
	}
	current := e.Domain("web01").Spec.Disks[0].Target
	if current == disk {
		t.Fatal("web01 was not moved onto an overlay")
	}
	// Change the clone: the original does not see it.
	cc := e.Console("web01-test")
	cc.WaitFor("ringfence: guest ready", 0, 90*time.Second)
	cc.WaitFor("/dev/vda mounted on /mnt", 0, 20*time.Second)
	cc.Send("echo clone-change > /mnt/marker; sync; echo changed-$((3*3))")
	cc.WaitFor("changed-9", 0, 10*time.Second)
	off := len(c.Output())
	c.Send("cat /mnt/marker")
	c.WaitFor("original-data", off, 10*time.Second)

	// Writing the frozen base is refused, however asked.
	e.MustRF("create", "-p", e.WriteConfig("other", "hotplug_slots = 1"))
	if r := e.RF("block-attach", "other", "file:"+disk+",xvdb,w"); r.Code == 0 || !strings.Contains(r.Stderr, "is the backing file of") {
		t.Errorf("block-attach of the base for writing: %+v", r)
	}
	e.MustRF("destroy", "other")
	// web01 shuts down (kept, on_poweroff = preserve); its old file names
	// the base: refused, naming the disk it has now.
	e.MustRF("shutdown", "-w", "web01")
	exported := filepath.Join(e.Dir, "web01-now.cfg")
	os.WriteFile(exported, []byte(e.MustRF("config", "export", "web01")), 0o644)
	e.MustRF("destroy", "web01")
	r := e.RF("create", cfg)
	if r.Code == 0 || !strings.Contains(r.Stderr, "is the backing file of "+current) || !strings.Contains(r.Stderr, "the domain's current disk is "+current) {
		t.Fatalf("create from the old file: %+v", r)
	}
	if len(e.List()) != 1 {
		t.Fatal("a refused create left a domain")
	}
	// From the exported file it comes back with its own data.
	e.MustRF("create", exported)
	c2 := e.Console("web01")
	c2.WaitFor("/dev/vda mounted on /mnt", 0, 90*time.Second)
	off = len(c2.Output())
	c2.Send("cat /mnt/marker")
	c2.WaitFor("original-data", off, 10*time.Second)
}

// TestImportSparseNoStart: an imported disk keeps its holes, its domain
// file has absolute paths that create takes, and --no-start / -p do what
// they say.
func TestImportSparseNoStart(t *testing.T) {
	e := NewEnv(t)
	disk := filepath.Join(e.Dir, "big.img")
	mustRun(t, "truncate", "-s", "256M", disk)
	mustRun(t, "dd", "if=/dev/urandom", "of="+disk, "bs=1M", "count=16", "seek=64", "conv=notrunc", "status=none")
	e.MustRF("create", "-p", e.WriteConfig("carry", "disk = [ 'file:"+disk+",xvda,w' ]"))
	archive := filepath.Join(e.Dir, "carry.rfx")
	e.MustRF("export", "carry", "-o", archive)
	e.MustRF("destroy", "carry")
	into := filepath.Join(e.Dir, "imports")
	r := e.RF("import", archive, "--dir", into, "--no-start")
	if r.Code != 0 || !strings.Contains(r.Stderr, "ringfence create "+filepath.Join(into, "carry", "domain.cfg")) {
		t.Fatalf("import --no-start: %+v", r)
	}
	if len(e.List()) != 0 {
		t.Fatal("--no-start started it")
	}
	var st syscall.Stat_t
	got := filepath.Join(into, "carry", "disks", "vda.raw")
	if err := syscall.Stat(got, &st); err != nil || st.Size != 256<<20 || st.Blocks*512 > 40<<20 {
		t.Fatalf("imported disk: size %d, allocated %d (%v)", st.Size, st.Blocks*512, err)
	}
	cfgText, _ := os.ReadFile(filepath.Join(into, "carry", "domain.cfg"))
	if !strings.Contains(string(cfgText), got) {
		t.Fatalf("domain.cfg does not name the disk by its absolute path:\n%s", cfgText)
	}
	e.MustRF("create", "-p", filepath.Join(into, "carry", "domain.cfg"))
	e.MustRF("destroy", "carry")
	os.RemoveAll(filepath.Join(into, "carry"))
	var d api.Domain
	json.Unmarshal([]byte(e.MustRF("import", archive, "--dir", into, "-p", "--json")), &d)
	if d.State != api.StatePaused {
		t.Fatalf("import -p: %s", d.State)
	}
	e.MustRF("destroy", "carry")
	// An import into a directory without room: one clear error about
	// space (not a "damaged archive"), nothing left there.
	small := filepath.Join(e.Dir, "small")
	os.Mkdir(small, 0o700)
	mustRun(t, "mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", small)
	defer exec.Command("umount", small).Run()
	r = e.RF("import", archive, "--dir", small)
	if r.Code == 0 || !strings.Contains(r.Stderr, "no space left on device") || !strings.Contains(r.Stderr, "import into another --dir") {
		t.Fatalf("import into a full directory: %+v", r)
	}
	if ents, _ := os.ReadDir(small); len(ents) != 0 {
		t.Fatalf("left in the full directory: %v", ents)
	}
	if len(e.List()) != 0 {
		t.Fatal("a failed import left a domain")
	}
}
