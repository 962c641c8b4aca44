package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/image"
)

// hostSim stands in for the host around a daemon: its kernel boot id (a
// file the daemon reads instead of the kernel's) and its auto dir.
type hostSim struct {
	bootID, auto string
	boots        int
}

// newHostEnv starts a daemon whose host can be "rebooted".
func newHostEnv(t *testing.T, serveArgs ...string) (*Env, *hostSim) {
	t.Helper()
	aux, err := os.MkdirTemp("/tmp", "rfhost")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(aux) })
	h := &hostSim{bootID: filepath.Join(aux, "boot_id"), auto: filepath.Join(aux, "auto"), boots: 1}
	os.MkdirAll(h.auto, 0o755)
	os.WriteFile(h.bootID, []byte("boot-1\n"), 0o644)
	e := NewEnv(t, append([]string{"--boot-id-file", h.bootID, "--auto-dir", h.auto}, serveArgs...)...)
	return e, h
}

// reboot does to the daemon's world what a host reboot (or a power cut)
// does: the daemon and every QEMU die at once, /run is empty, the
// kernel's boot id is new. Then the daemon starts, as at boot.
func (h *hostSim) reboot(e *Env) {
	e.t.Helper()
	e.KillDaemon()
	for _, p := range e.QEMUs() {
		syscall.Kill(p, syscall.SIGKILL)
	}
	e.Await("every QEMU gone", 10*time.Second, func() bool { return len(e.QEMUs()) == 0 })
	os.RemoveAll(filepath.Join(e.Dir, "run"))
	h.boots++
	os.WriteFile(h.bootID, []byte(fmt.Sprintf("boot-%d\n", h.boots)), 0o644)
	e.StartDaemon()
}

func findDomain(ds []api.Domain, name string) (api.Domain, bool) {
	for _, d := range ds {
		if d.Spec.Name == name {
			return d, true
		}
	}
	return api.Domain{}, false
}

// mustFind returns a domain from list --all, failing if it is gone.
func (e *Env) mustFind(name string) api.Domain {
	e.t.Helper()
	d, ok := findDomain(e.ListAll(), name)
	if !ok {
		e.t.Fatalf("%s is gone from list --all\ndaemon log:\n%s", name, tail(e.DaemonLog(), 3000))
	}
	return d
}

// define, start, stop, undefine; config update applied at the next start;
// the bad inputs the issue names, each one clear error with nothing done.
func TestDefinitions(t *testing.T) {
	e := NewEnv(t)
	f := e.WriteConfig("web", "")
	e.MustRF("define", f)
	if d := e.mustFind("web"); !d.Defined || d.PID != 0 || d.LastReason != "never started" {
		t.Fatalf("a defined domain: %+v", d)
	}
	if _, ok := findDomain(e.List(), "web"); ok {
		t.Fatal("plain list shows a defined domain that never ran; xl's list shows running ones")
	}
	if out := e.MustRF("list", "--all"); !strings.Contains(out, "web stopped: never started") {
		t.Fatalf("list --all does not say why web is stopped:\n%s", out)
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"define", f}, "already exists"},
		{[]string{"autostart", "nosuch", "on"}, "nosuch"},
		{[]string{"autostart", "web", "maybe"}, "on or off"},
		{[]string{"start", "nosuch"}, "nosuch"},
	} {
		r := e.RF(bad.args...)
		if r.Code == 0 || !strings.Contains(r.Stderr, bad.want) {
			t.Fatalf("ringfence %v: exit %d, stderr %q; want an error naming %q", bad.args, r.Code, r.Stderr, bad.want)
		}
	}
	e.MustRF("start", "web")
	c := e.Console("web")
	c.WaitFor(image.ReadyLine, 0, 90*time.Second)
	if r := e.RF("start", "web"); r.Code == 0 || !strings.Contains(r.Stderr, "already") {
		t.Fatalf("start of a running domain: exit %d, %q", r.Code, r.Stderr)
	}

	// An update that fails validation changes nothing.
	bad := filepath.Join(e.Dir, "bad.cfg")
	os.WriteFile(bad, []byte("name = \"web\"\nmemory = \"lots\"\n"), 0o644)
	if r := e.RF("config", "update", "web", bad); r.Code == 0 || !strings.Contains(r.Stderr, "bad.cfg:2") {
		t.Fatalf("an invalid update: exit %d, %q; want file:line", r.Code, r.Stderr)
	}
	def, err := e.Client.Definition(context.Background(), "web")
	if err != nil || def.Pending != nil || def.Spec.MemoryMiB != 128 {
		t.Fatalf("the definition changed after a refused update: %+v %v", def, err)
	}
	// A valid one waits for the next start.
	good := filepath.Join(e.Dir, "web2.cfg")
	b, _ := os.ReadFile(f)
	os.WriteFile(good, []byte(strings.Replace(string(b), "memory = 128", "memory = 160", 1)), 0o644)
	if r := e.RF("config", "update", "web", good); r.Code != 0 || !strings.Contains(r.Stderr, "next start") {
		t.Fatalf("config update of a running domain: exit %d, %q; want it to say when it applies", r.Code, r.Stderr)
	}
	if d := e.Domain("web"); d.Spec.MemoryMiB != 128 {
		t.Fatalf("the update changed the running domain: %d MiB", d.Spec.MemoryMiB)
	}
	if out := e.MustRF("config", "export", "web"); !strings.Contains(out, "memory = 160") {
		t.Fatalf("config export does not show the definition's next spec:\n%s", out)
	}

	// stop = shutdown: the domain is kept, with why.
	e.MustRF("stop", "web", "-w", "--timeout", "240") // a guest still booting on a busy host takes a while to act on ACPI
	d := e.mustFind("web")
	if d.PID != 0 || d.State != api.StateShutdown || !strings.Contains(d.LastReason, "poweroff") {
		t.Fatalf("after stop: %+v", d)
	}
	e.MustRF("start", "web")
	if d := e.Domain("web"); d.Spec.MemoryMiB != 160 || d.PID == 0 {
		t.Fatalf("the update was not applied at the next start: %+v", d)
	}
	// destroy stops a defined domain; it is still there to start.
	e.MustRF("destroy", "web")
	if d := e.mustFind("web"); d.PID != 0 || !d.Defined {
		t.Fatalf("destroy of a defined domain: %+v", d)
	}
	e.MustRF("start", "web")
	pid := e.Domain("web").PID
	// undefine a running one: it runs on, transient.
	e.MustRF("undefine", "web")
	if d := e.Domain("web"); d.Defined || d.PID != pid {
		t.Fatalf("undefine of a running domain: %+v (pid was %d)", d, pid)
	}
	e.MustRF("destroy", "web")
	if _, ok := findDomain(e.ListAll(), "web"); ok {
		t.Fatal("an undefined domain outlived its destroy")
	}

	// create keeps xl's meaning; persistent = 1 makes it defined.
	e.MustRF("create", e.WriteConfig("keep", "persistent = 1"))
	if d := e.Domain("keep"); !d.Defined {
		t.Fatalf("persistent = 1 did not define it: %+v", d)
	}
	e.MustRF("destroy", "keep")
	e.mustFind("keep")
	e.MustRF("undefine", "keep")
}

// A host reboot, simulated: every QEMU dies with the daemon, /run is
// wiped and the boot id changes. Autostart domains come back in order
// (the API answering meanwhile), the auto dir's files too; the others
// are listed as stopped by the reboot, none lost, none "crashed".
func TestHostReboot(t *testing.T) {
	e, h := newHostEnv(t, "--vcpu-ratio", "4")
	// The auto dir is read at the first start after a boot.
	auto := e.WriteConfig("fromauto", "")
	os.Rename(auto, filepath.Join(h.auto, "fromauto.cfg"))
	e.MustRF("define", e.WriteConfig("first", ""))
	e.MustRF("autostart", "first", "on", "--order", "10", "--delay", "4")
	e.MustRF("define", e.WriteConfig("second", ""))
	e.MustRF("autostart", "second", "on", "--order", "20")
	// Admission still applies at boot: one that does not fit is reported.
	e.MustRF("define", e.WriteConfig("toobig", "maxmem = 900000"))
	e.MustRF("autostart", "toobig", "on", "--order", "30")
	e.MustRF("define", e.WriteConfig("manual", ""))
	e.MustRF("start", "manual")
	e.MustRF("create", e.WriteConfig("temp", "")) // transient, on_crash = destroy
	if r := e.RF("autostart", "temp", "on"); r.Code == 0 || !strings.Contains(r.Stderr, "not defined") {
		t.Fatalf("autostart of a transient domain: exit %d, %q", r.Code, r.Stderr)
	}
	h.reboot(e)
	// The API answers while autostart waits out first's delay.
	e.Await("first started", 30*time.Second, func() bool { return e.mustFind("first").PID != 0 })
	if d := e.mustFind("second"); d.PID != 0 {
		t.Fatalf("second (order 20) started during first's 4 s delay: %+v", d)
	}
	e.Await("second started", 30*time.Second, func() bool { return e.mustFind("second").PID != 0 })
	first, second := e.mustFind("first"), e.mustFind("second")
	if gap := second.StartedAt.Sub(first.StartedAt); gap < 3500*time.Millisecond {
		t.Fatalf("second started %s after first; the delay is 4 s", gap)
	}
	e.Await("fromauto back", 30*time.Second, func() bool { return e.mustFind("fromauto").PID != 0 })
	e.Await("toobig refused", 30*time.Second, func() bool {
		return strings.HasPrefix(e.mustFind("toobig").LastReason, "autostart refused")
	})
	if d := e.mustFind("toobig"); d.PID != 0 || !strings.Contains(d.LastReason, "memory") {
		t.Fatalf("an autostart domain that does not fit: %+v", d)
	}
	for _, name := range []string{"manual", "temp"} {
		d := e.mustFind(name)
		if d.PID != 0 || d.State != api.StateShutdown || d.LastReason != "host rebooted" {
			t.Fatalf("%s after a host reboot: state %s, reason %q, pid %d; want stopped, \"host rebooted\"", name, d.State, d.LastReason, d.PID)
		}
	}
	if out := e.MustRF("list", "--all"); !strings.Contains(out, "manual stopped: host rebooted") || !strings.Contains(out, "temp stopped: host rebooted") {
		t.Fatalf("list --all:\n%s", out)
	}
	if out := e.MustRF("info", "manual"); !strings.Contains(out, "last_stop") || !strings.Contains(out, "host rebooted") || !strings.Contains(out, "defined") {
		t.Fatalf("info manual:\n%s", out)
	}
	// A restart of the daemon is not a reboot: nothing changes.
	pids := map[string]int{}
	for _, n := range []string{"first", "second", "fromauto"} {
		pids[n] = e.mustFind(n).PID
	}
	e.KillDaemon()
	e.StartDaemon()
	for n, p := range pids {
		if got := e.mustFind(n).PID; got != p {
			t.Fatalf("%s: pid %d after a daemon restart, was %d", n, got, p)
		}
	}
	e.MustRF("start", "temp")
	c := e.Console("temp")
	c.WaitFor(image.ReadyLine, 0, 90*time.Second)
}

// shutdown --all, as ringfence-guests.service runs it at host shutdown:
// every guest powered off cleanly (defined ones kept); with --save they
// are saved and come back at the next boot where they were.
func TestHostShutdownAll(t *testing.T) {
	e, h := newHostEnv(t, "--vcpu-ratio", "2") // three 1-vCPU guests at once on 2 CPUs
	e.Boot("a", "")
	e.MustRF("define", e.WriteConfig("b", ""))
	e.MustRF("start", "b")
	e.Console("b").WaitFor(image.ReadyLine, 0, 90*time.Second)
	out := e.MustRF("shutdown", "--all", "--timeout", "60")
	if !strings.Contains(out, "a: shut down") || !strings.Contains(out, "b: shut down") {
		t.Fatalf("shutdown --all:\n%s", out)
	}
	if q := e.QEMUs(); len(q) != 0 {
		t.Fatalf("QEMUs after shutdown --all: %v", q)
	}
	if d := e.mustFind("b"); d.PID != 0 || !d.Defined || d.LastReason != "host shut down" {
		t.Fatalf("b after shutdown --all: %+v", d)
	}
	// A transient domain is kept too, stopped: the host went down, not
	// the guest, and `start` brings it back.
	if d := e.mustFind("a"); d.PID != 0 || d.State != api.StateShutdown || d.LastReason != "host shut down" {
		t.Fatalf("transient a after shutdown --all: %+v", d)
	}

	// Saved instead: restored at boot, with their memory.
	c := e.Boot("s1", "")
	e.MustRF("start", "b")
	cb := e.Console("b")
	cb.WaitFor(image.ReadyLine, 0, 90*time.Second)
	for _, con := range []*Console{c, cb} {
		con.Do("echo kept-$((6*7)) > /tmp/m; echo noted-$(cat /tmp/m)", "noted-kept-42", 30*time.Second)
	}
	saveDir := filepath.Join(e.Dir, "saved")
	os.MkdirAll(saveDir, 0o700)
	e.MustRF("define", e.WriteConfig("c", ""))
	e.MustRF("start", "c")
	out = e.MustRF("shutdown", "--all", "--save", saveDir)
	if !strings.Contains(out, "s1: saved to") || !strings.Contains(out, "b: saved to") || !strings.Contains(out, "c: saved to") {
		t.Fatalf("shutdown --all --save:\n%s", out)
	}
	// A save file damaged meanwhile: c is not restored, and says so.
	bad := filepath.Join(saveDir, "c.save")
	if err := os.WriteFile(bad, []byte("not a save file"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.reboot(e)
	for _, name := range []string{"s1", "b"} {
		e.Await(name+" restored", 60*time.Second, func() bool {
			d, ok := findDomain(e.ListAll(), name)
			return ok && d.PID != 0
		})
		// What the guest wrote before the save, read back now: printed
		// as after-42, which its console history cannot hold.
		e.Console(name).Do("sed s/kept/after/ /tmp/m", "after-42", 30*time.Second)
	}
	if d := e.mustFind("c"); d.PID != 0 || !strings.Contains(d.LastReason, "not restored from "+bad) {
		t.Fatalf("c, whose save file was damaged: %+v", d)
	}
	if left, _ := filepath.Glob(filepath.Join(saveDir, "*")); len(left) != 1 || left[0] != bad {
		t.Fatalf("save files left after the restore: %v (want only the damaged %s, kept)", left, bad)
	}
}

// Logs outlive the guest; dmesg shows the daemon's log; SIGHUP reopens
// the log file rather than ending the daemon; an unwritable log dir is
// one clear error at start.
func TestLogsOutliveGuests(t *testing.T) {
	aux, _ := os.MkdirTemp("/tmp", "rflog")
	defer os.RemoveAll(aux)
	logFile := filepath.Join(aux, "daemon.log")
	e := NewEnv(t, "--log", logFile)
	e.Boot("lg", "")
	e.MustRF("destroy", "lg")
	if out := e.MustRF("log", "lg"); !strings.Contains(out, image.ReadyLine) {
		t.Fatalf("log of a destroyed domain lacks its console:\n%s", tail(out, 500))
	}
	if out := e.MustRF("log", "lg", "--qemu"); out == "" {
		t.Log("QEMU's own log is empty (it printed nothing)")
	}
	if r := e.RF("log", "nosuch"); r.Code == 0 || !strings.Contains(r.Stderr, "nosuch") {
		t.Fatalf("log of an unknown domain: exit %d, %q", r.Code, r.Stderr)
	}
	if out := e.MustRF("dmesg"); !strings.Contains(out, `msg="domain started" name=lg`) {
		t.Fatalf("dmesg lacks the start of lg:\n%s", tail(out, 1000))
	}
	// logrotate: move the file, HUP, the daemon writes a new one.
	os.Rename(logFile, logFile+".1")
	pid := e.daemon.Process.Pid
	syscall.Kill(pid, syscall.SIGHUP)
	e.Await("a new log file after SIGHUP", 10*time.Second, func() bool {
		_, err := os.Stat(logFile)
		return err == nil
	})
	e.Boot("lg2", "")
	if b, _ := os.ReadFile(logFile); !strings.Contains(string(b), "name=lg2") {
		t.Fatalf("the reopened log lacks lg2's start:\n%s", b)
	}
	if e.daemon == nil || syscall.Kill(pid, 0) != nil {
		t.Fatal("SIGHUP ended the daemon")
	}

	// An unwritable log dir refuses the start, saying which and how.
	state := filepath.Join(aux, "state")
	out, err := exec.Command(binPath, "--socket", filepath.Join(aux, "s.sock"), "serve", "--state-dir", state, "--run-dir", filepath.Join(aux, "run"), "--log-dir", "/proc/ringfence-logs").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "log dir cannot be written") || !strings.Contains(string(out), "--log-dir") {
		t.Fatalf("serve with an unwritable log dir: %v\n%s", err, out)
	}
}

// With more vCPUs running than a stricter --vcpu-ratio allows, the
// daemon adopts them all, says so, and admits nothing new until they fit.
func TestStricterLimitsAfterRestart(t *testing.T) {
	e := NewEnv(t, "--vcpu-ratio", "1")
	e.MustRF("create", e.WriteConfig("v1", ""))
	e.MustRF("create", e.WriteConfig("v2", ""))
	e.KillDaemon()
	e.serveArgs = []string{"--vcpu-ratio", "0.5"}
	e.StartDaemon()
	for _, n := range []string{"v1", "v2"} {
		if d := e.Domain(n); d.PID == 0 {
			t.Fatalf("%s not re-adopted: %+v", n, d)
		}
	}
	info := e.MustRF("info")
	if !strings.Contains(info, "WARNING") || !strings.Contains(info, "oversold") {
		t.Fatalf("info does not warn of the oversell:\n%s", info)
	}
	r := e.RF("create", e.WriteConfig("v3", ""))
	if r.Code == 0 || !strings.Contains(r.Stderr, "vCPU") {
		t.Fatalf("a create on an oversold host: exit %d, %q", r.Code, r.Stderr)
	}
	e.MustRF("destroy", "v2")
	e.MustRF("destroy", "v1")
	e.MustRF("create", e.WriteConfig("v3", ""))
}
