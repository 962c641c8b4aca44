package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/image"
)

func TestBootListInfo(t *testing.T) {
	e := NewEnv(t)
	disk := filepath.Join(e.Dir, "web01.img")
	mustRun(t, "cp", "--sparse=always", imgPaths.Disk, disk)
	c := e.Boot("web01", `disk = [ 'file:`+disk+`,xvda,w' ]`)
	// The disk is a virtio disk the initramfs mounted.
	c.WaitFor("/dev/vda mounted on /mnt", 0, 5*time.Second)
	off := len(c.Output())
	c.Send("cat /mnt/hello.txt")
	c.WaitFor("hello from the ringfence default disk", off, 10*time.Second)

	out := e.MustRF("list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "Name") || !strings.Contains(lines[0], "Time(s)") {
		t.Fatalf("list output not in xl's layout:\n%s", out)
	}
	f := strings.Fields(lines[1])
	if f[0] != "web01" || f[2] != "128" || f[3] != "1" || !regexp.MustCompile(`^[rb]-{5}$|^-b-{4}$`).MatchString(f[4]) {
		t.Fatalf("list row wrong: %q", lines[1])
	}
	d := e.Domain("web01")
	if d.ID < 1 || d.PID == 0 || d.CPUTime <= 0 {
		t.Fatalf("domain facts wrong: %+v", d)
	}
	// QEMU dropped root once its devices were open.
	status, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(d.PID), "status"))
	if m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)`).FindStringSubmatch(string(status)); m == nil || m[1] == "0" {
		t.Fatalf("QEMU runs as root:\n%s", status)
	}
	info := e.MustRF("info")
	if !strings.Contains(info, "accelerator        : tcg") && !strings.Contains(info, "accelerator        : kvm") {
		t.Fatalf("info lacks the accelerator:\n%s", info)
	}
	if up := e.MustRF("uptime"); !strings.Contains(up, "web01") {
		t.Fatalf("uptime lacks web01:\n%s", up)
	}
	e.MustRF("destroy", "web01")
	if ds := e.List(); len(ds) != 0 {
		t.Fatalf("destroyed domain still listed: %+v", ds)
	}
	if _, err := os.Stat(filepath.Join(e.Dir, "run", "domains", "web01")); !os.IsNotExist(err) {
		t.Fatalf("runtime dir left after destroy: %v", err)
	}
	if q := e.QEMUs(); len(q) != 0 {
		t.Fatalf("QEMU left after destroy: %v", q)
	}
}

var tickRE = regexp.MustCompile(`tick(\d+)`)

func lastTick(t *testing.T, s string) int {
	m := tickRE.FindAllStringSubmatch(s, -1)
	if len(m) == 0 {
		return -1
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

func TestPauseStopsCounter(t *testing.T) {
	e := NewEnv(t)
	c := e.Boot("ctr", "")
	c.Send(`i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done &`)
	c.WaitFor("tick5", 0, 20*time.Second)

	e.MustRF("pause", "ctr")
	if d := e.Domain("ctr"); d.State != api.StatePaused || d.Flags != "--p---" {
		t.Fatalf("after pause: state %s flags %s", d.State, d.Flags)
	}
	time.Sleep(300 * time.Millisecond) // output in flight drains
	before := lastTick(t, c.Output())
	time.Sleep(1500 * time.Millisecond)
	if after := lastTick(t, c.Output()); after != before {
		t.Fatalf("counter moved while paused: %d -> %d", before, after)
	}
	e.MustRF("unpause", "ctr")
	c.WaitFor("tick"+strconv.Itoa(before+5), 0, 20*time.Second)
	if d := e.Domain("ctr"); d.State == api.StatePaused {
		t.Fatalf("still paused after unpause")
	}
}

func TestShutdownPreserve(t *testing.T) {
	e := NewEnv(t)
	c := e.Boot("keep", `on_poweroff = "preserve"`)
	e.MustRF("shutdown", "-w", "--timeout", "60", "keep")
	c.WaitFor("power button pressed", 0, 5*time.Second)
	d := e.Domain("keep")
	if d.State != api.StateShutdown || d.Flags != "---s--" || d.PID != 0 {
		t.Fatalf("preserved domain: %+v", d)
	}
	if !strings.HasPrefix(d.LastReason, "poweroff") {
		t.Fatalf("reason %q, want poweroff", d.LastReason)
	}
	if q := e.QEMUs(); len(q) != 0 {
		t.Fatalf("QEMU still running after shutdown: %v", q)
	}
	// The console history survives the guest.
	conn := e.Console("keep")
	conn.WaitFor(image.ReadyLine, 0, 5*time.Second)
	e.MustRF("destroy", "keep")
	if len(e.List()) != 0 {
		t.Fatal("destroy did not remove the preserved domain")
	}
}

func TestShutdownDestroyDefault(t *testing.T) {
	e := NewEnv(t)
	e.Boot("gone", "")
	e.MustRF("shutdown", "-w", "gone")
	if len(e.List()) != 0 {
		t.Fatal("on_poweroff=destroy (the default) left the domain listed")
	}
}

func TestDaemonRestartReattach(t *testing.T) {
	e := NewEnv(t)
	c := e.Boot("stay", "")
	before := e.Domain("stay")
	e.KillDaemon()
	if q := e.QEMUs(); len(q) != 1 || q[0] != before.PID {
		t.Fatalf("QEMU did not outlive the daemon: %v (had %d)", q, before.PID)
	}
	e.StartDaemon()
	after := e.Domain("stay")
	if after.ID != before.ID || after.PID != before.PID {
		t.Fatalf("re-attach changed identity: before id %d pid %d, after id %d pid %d", before.ID, before.PID, after.ID, after.PID)
	}
	_ = c
	c2 := e.Console("stay")
	c2.WaitFor(image.ReadyLine, 0, 5*time.Second) // history kept
	off := len(c2.Output())
	c2.Send("echo still-$((40+2))")
	c2.WaitFor("still-42", off, 10*time.Second)
	// And the lifecycle still works through the new daemon.
	e.MustRF("destroy", "stay")
	if q := e.QEMUs(); len(q) != 0 {
		t.Fatalf("QEMU left: %v", q)
	}
}

func TestCrashRestart(t *testing.T) {
	e := NewEnv(t)
	e.Boot("phoenix", `on_crash = "restart"`)
	first := e.Domain("phoenix")
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.Await("a new incarnation", 30*time.Second, func() bool {
		d := e.Domain("phoenix")
		return d.PID != 0 && d.PID != first.PID
	})
	second := e.Domain("phoenix")
	if second.ID == first.ID {
		t.Fatalf("restarted domain kept id %d; Xen gives a new domid", first.ID)
	}
	c := e.Console("phoenix")
	// History holds both boots; wait for the second ready line.
	idx := strings.Index(c.Output(), image.ReadyLine)
	if idx < 0 {
		c.WaitFor(image.ReadyLine, 0, 60*time.Second)
		idx = strings.Index(c.Output(), image.ReadyLine)
	}
	c.WaitFor(image.ReadyLine, idx+1, 90*time.Second)
}

func TestCrashWhileDaemonDown(t *testing.T) {
	e := NewEnv(t)
	e.Boot("orphan", `on_crash = "preserve"`)
	d := e.Domain("orphan")
	e.KillDaemon()
	syscall.Kill(d.PID, syscall.SIGKILL)
	e.Await("QEMU to die", 10*time.Second, func() bool { return len(e.QEMUs()) == 0 })
	e.StartDaemon()
	got := e.Domain("orphan")
	if got.State != api.StateCrashed || got.Flags != "---sc-" {
		t.Fatalf("domain that died while the daemon was down: %+v", got)
	}
}

func TestRebootRestarts(t *testing.T) {
	e := NewEnv(t)
	c := e.Boot("rb", "")
	first := e.Domain("rb")
	e.MustRF("reboot", "rb")
	e.Await("reboot", 30*time.Second, func() bool {
		d := e.Domain("rb")
		return d.PID != 0 && d.ID != first.ID
	})
	idx := strings.Index(c.Output(), image.ReadyLine)
	c.WaitFor(image.ReadyLine, idx+1, 90*time.Second)
}

func TestRenameRestart(t *testing.T) {
	e := NewEnv(t)
	c := e.Boot("rr", `on_reboot = "rename-restart"`)
	first := e.Domain("rr")
	e.MustRF("reboot", "rr")
	e.Await("the renamed old domain and a new one", 30*time.Second, func() bool {
		ds := e.List()
		return len(ds) == 2
	})
	old := e.Domain("rr--incarnation-1")
	if old.State != api.StateShutdown || old.ID != first.ID || old.PID != 0 {
		t.Fatalf("kept domain: %+v", old)
	}
	if d := e.Domain("rr"); d.ID == first.ID || d.PID == 0 {
		t.Fatalf("new domain: %+v", d)
	}
	idx := strings.Index(c.Output(), image.ReadyLine)
	c.WaitFor(image.ReadyLine, idx+1, 90*time.Second)
}

// A guest that ignores the power button is destroyed by --force.
func TestShutdownForce(t *testing.T) {
	e := NewEnv(t)
	c := e.Boot("deaf", `on_poweroff = "preserve"`)
	off := len(c.Output())
	c.Send("killall dd; echo deaf-$((2*3))")
	c.WaitFor("deaf-6", off, 10*time.Second)
	t0 := time.Now()
	r := e.RF("shutdown", "--force", "--timeout", "3", "deaf")
	if r.Code != 0 {
		t.Fatalf("shutdown --force: %+v", r)
	}
	if time.Since(t0) > 20*time.Second {
		t.Fatalf("--force took %s", time.Since(t0))
	}
	if len(e.List()) != 0 || len(e.QEMUs()) != 0 {
		t.Fatalf("domain survived --force: %+v", e.List())
	}
}

func TestDryRunAndPausedCreate(t *testing.T) {
	e := NewEnv(t)
	cfg := e.WriteConfig("dry", `disk = [ 'file:`+imgPaths.Disk+`,xvda1,r' ]`+"\nroot = '/dev/xvda1'")
	out := e.MustRF("create", "--dry-run", cfg)
	for _, want := range []string{`"name": "dry"`, "# argv", "qemu-system-x86_64", "-kernel " + imgPaths.Kernel, "root=/dev/vda", "readonly=on"} {
		if !strings.Contains(out, want) {
			t.Fatalf("dry run lacks %q:\n%s", want, out)
		}
	}
	if len(e.List()) != 0 || len(e.QEMUs()) != 0 {
		t.Fatal("dry run created something")
	}
	e.MustRF("create", "-p", e.WriteConfig("held", ""))
	d := e.Domain("held")
	if d.State != api.StatePaused || d.Flags != "--p---" {
		t.Fatalf("create -p: %+v", d)
	}
	// export -> show gives back the same spec.
	exported := filepath.Join(e.Dir, "held-export.cfg")
	os.WriteFile(exported, []byte(e.MustRF("config", "export", "held")), 0o644)
	var shown api.DomainSpec
	if err := json.Unmarshal([]byte(e.MustRF("config", "show", exported)), &shown); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(shown, d.Spec) {
		t.Fatalf("export/show changed the spec:\n%+v\n%+v", shown, d.Spec)
	}
	if r := e.RF("config", "check", exported, filepath.Join(e.Dir, "missing.cfg")); r.Code != 1 || !strings.Contains(r.Stdout, "held-export.cfg: ok") {
		t.Fatalf("config check: %+v", r)
	}
	c := e.Console("held")
	time.Sleep(time.Second)
	if strings.Contains(c.Output(), image.ReadyLine) {
		t.Fatal("a domain created paused booted")
	}
	e.MustRF("unpause", "held")
	c.WaitFor(image.ReadyLine, 0, 90*time.Second)
}
