package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/image"
)

// syncBuffer is a CLI's output read while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestXlVerbs drives xl's remaining verbs on one real guest: create with
// an override and bundled -pc, domid/domname, vcpu-set seen in the
// guest's /sys, sysrq and trigger nmi seen on its console, dump-core's
// ELF file, and rename keeping the same QEMU (across a daemon restart).
func TestXlVerbs(t *testing.T) {
	e := NewEnv(t)
	cfg := e.WriteConfig("xl", "maxvcpus = 2")
	e.names = append(e.names, "xl2")

	// create FILE KEY=VALUE -pc: paused, the console attached (the guest's
	// output reaches the CLI once it is unpaused), memory overridden.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out syncBuffer
	cli := exec.CommandContext(ctx, binPath, "--socket", e.Socket, "create", cfg, "memory=160", "-pc")
	cli.Stdout, cli.Stderr = &out, &out
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cli.Process.Kill(); cli.Wait() }()
	e.Await("the domain created paused", time.Minute, func() bool {
		d, err := e.Client.Get(context.Background(), "xl")
		return err == nil && d.State == api.StatePaused
	})
	if d := e.Domain("xl"); d.Spec.MemoryMiB != 160 || d.Spec.MaxVCPUs != 2 || d.Spec.VCPUs != 1 {
		t.Fatalf("override not applied: memory %d, vcpus %d of %d", d.Spec.MemoryMiB, d.Spec.VCPUs, d.Spec.MaxVCPUs)
	}
	e.MustRF("unpause", "xl")
	e.Await("the guest's ready line on create -c's console", 90*time.Second, func() bool { return strings.Contains(out.String(), image.ReadyLine) })
	cli.Process.Kill()
	cli.Wait()
	c := e.Console("xl")
	c.Do("echo ok-$((6*7))", "ok-42", 30*time.Second)

	xlLists(t, e)
	xlDomidDomname(t, e)
	xlVCPUs(t, e, c)
	xlEvents(t, e, c)
	xlDumpCore(t, e)
	xlRename(t, e)
}

// xlLists: list -l is each domain's configuration as JSON (xl list -l),
// list -v adds the UUID column; -l and -v together are a usage error.
func xlLists(t *testing.T, e *Env) {
	var long []struct {
		DomID  int            `json:"domid"`
		Config api.DomainSpec `json:"config"`
	}
	if err := json.Unmarshal([]byte(e.MustRF("list", "-l", "xl")), &long); err != nil || len(long) != 1 ||
		long[0].Config.Name != "xl" || long[0].Config.MemoryMiB != 160 || long[0].DomID != e.Domain("xl").ID {
		t.Fatalf("list -l: %v %+v", err, long)
	}
	rows := strings.Split(strings.TrimSpace(e.MustRF("list", "-v")), "\n")
	if len(rows) != 2 || !strings.Contains(rows[0], "UUID") || !strings.HasPrefix(rows[1], "xl ") {
		t.Fatalf("list -v:\n%s", strings.Join(rows, "\n"))
	}
	if r := e.RF("list", "-lv"); r.Code != 2 {
		t.Fatalf("list -lv: exit %d, want 2", r.Code)
	}
}

// xlDomidDomname: the two round-trip; what is not there exits 3.
func xlDomidDomname(t *testing.T, e *Env) {
	id := strings.TrimSpace(e.MustRF("domid", "xl"))
	if n, err := strconv.Atoi(id); err != nil || n != e.Domain("xl").ID {
		t.Fatalf("domid xl = %q, want %d", id, e.Domain("xl").ID)
	}
	if name := strings.TrimSpace(e.MustRF("domname", id)); name != "xl" {
		t.Fatalf("domname %s = %q", id, name)
	}
	for _, args := range [][]string{{"domname", "4242"}, {"domid", "nosuch"}} {
		if r := e.RF(args...); r.Code != 3 {
			t.Fatalf("%v: exit %d, want 3 (not found): %s", args, r.Code, r.Stderr)
		}
	}
}

// vcpus is vcpu-list --json's one domain.
func vcpus(t *testing.T, e *Env, name string) []api.VCPU {
	t.Helper()
	var ds []struct {
		VCPUs []api.VCPU `json:"vcpus"`
	}
	if err := json.Unmarshal([]byte(e.MustRF("vcpu-list", "--json", name)), &ds); err != nil || len(ds) != 1 {
		t.Fatalf("vcpu-list --json %s: %v %+v", name, err, ds)
	}
	return ds[0].VCPUs
}

// xlVCPUs: vcpu-set plugs a vCPU the guest's /sys shows (and the guest
// onlines), unplugs it again, and refuses to go past maxvcpus.
func xlVCPUs(t *testing.T, e *Env, c *Console) {
	if vs := vcpus(t, e, "xl"); len(vs) != 2 || !vs[0].Online || vs[1].Online || vs[0].ThreadID == 0 {
		t.Fatalf("vcpu-list before vcpu-set: %+v", vs)
	}
	if rows := strings.Split(strings.TrimSpace(e.MustRF("vcpu-list", "xl")), "\n"); len(rows) != 3 || !strings.Contains(rows[2], "--p") {
		t.Fatalf("vcpu-list table:\n%s", strings.Join(rows, "\n"))
	}
	e.MustRF("vcpu-set", "xl", "2")
	c.Do("echo P=$(cat /sys/devices/system/cpu/present)", "P=0-1", 60*time.Second)
	c.Do("echo 1 > /sys/devices/system/cpu/cpu1/online; echo O=$(cat /sys/devices/system/cpu/online)", "O=0-1", 60*time.Second)
	if vs := vcpus(t, e, "xl"); len(vs) != 2 || !vs[1].Online || vs[1].ThreadID == 0 || vs[1].ThreadID == vs[0].ThreadID {
		t.Fatalf("vcpu-list after vcpu-set 2: %+v", vs)
	}
	if d := e.Domain("xl"); d.Spec.VCPUs != 2 {
		t.Fatalf("the record says %d vCPUs after vcpu-set 2", d.Spec.VCPUs)
	}
	if r := e.RF("vcpu-set", "xl", "3"); r.Code != 1 || !strings.Contains(r.Stderr, "maxvcpus (2)") {
		t.Fatalf("vcpu-set past maxvcpus: exit %d: %s", r.Code, r.Stderr)
	}
	e.MustRF("vcpu-set", "xl", "1")
	c.Do("echo P=$(cat /sys/devices/system/cpu/present)", "P=0\r", 60*time.Second)
	if vs := vcpus(t, e, "xl"); vs[1].Online {
		t.Fatalf("vcpu-list after vcpu-set 1: %+v", vs)
	}
}

// xlEvents: sysrq h and trigger nmi reach the guest's kernel, which says
// so on its console; an event QEMU cannot inject is refused with why.
func xlEvents(t *testing.T, e *Env, c *Console) {
	from := len(c.Output())
	e.MustRF("sysrq", "xl", "h")
	c.WaitFor("sysrq: HELP", from, 30*time.Second)
	from = len(c.Output())
	e.MustRF("trigger", "xl", "nmi")
	c.WaitFor("NMI received", from, 30*time.Second)
	if r := e.RF("trigger", "xl", "sleep"); r.Code != 1 || !strings.Contains(r.Stderr, "no ACPI sleep button") {
		t.Fatalf("trigger sleep: exit %d: %s", r.Code, r.Stderr)
	}
	if r := e.RF("sysrq", "xl", "hh"); r.Code != 1 || !strings.Contains(r.Stderr, "one lowercase letter or digit") {
		t.Fatalf("sysrq hh: exit %d: %s", r.Code, r.Stderr)
	}
	c.Do("echo alive-$((6*7))", "alive-42", 30*time.Second)
}

// xlDumpCore: the core is an ELF file of at least the guest's RAM; a
// second dump onto it is refused and leaves it alone.
func xlDumpCore(t *testing.T, e *Env) {
	core := filepath.Join(e.Dir, "xl.core")
	e.MustRF("dump-core", "xl", core)
	f, err := os.Open(core)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4)
	f.Read(head)
	fi, _ := f.Stat()
	f.Close()
	if string(head) != "\x7fELF" || fi.Size() < 160<<20 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("core: header %q, %d bytes, mode %v", head, fi.Size(), fi.Mode())
	}
	if r := e.RF("dump-core", "xl", core); r.Code != 1 || !strings.Contains(r.Stderr, "exists") {
		t.Fatalf("dump-core onto an existing file: exit %d: %s", r.Code, r.Stderr)
	}
	if fi2, _ := os.Stat(core); fi2.Size() != fi.Size() || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Fatalf("the refused dump changed the file")
	}
	os.Remove(core)
}

// xlRename: the running guest keeps its QEMU under the new name, also
// after a daemon restart; a taken or invalid name is refused.
func xlRename(t *testing.T, e *Env) {
	pid := e.Domain("xl").PID
	e.MustRF("define", e.WriteConfig("other", ""))
	for _, bad := range []struct{ name, want string }{{"other", "exists"}, {"bad/name", "'/' is not allowed"}} {
		if r := e.RF("rename", "xl", bad.name); r.Code != 1 || !strings.Contains(r.Stderr, bad.want) {
			t.Fatalf("rename xl %s: exit %d: %s", bad.name, r.Code, r.Stderr)
		}
	}
	e.MustRF("rename", "xl", "xl2")
	d := e.Domain("xl2")
	if d.PID != pid || d.State == api.StateShutdown {
		t.Fatalf("after rename: pid %d (was %d), state %s", d.PID, pid, d.State)
	}
	if r := e.RF("domid", "xl"); r.Code != 3 {
		t.Fatalf("the old name still answers: exit %d", r.Code)
	}
	e.Console("xl2").Do("echo renamed-$((6*7))", "renamed-42", 30*time.Second)
	e.StopDaemon()
	e.StartDaemon()
	if d := e.Domain("xl2"); d.PID != pid {
		t.Fatalf("after a daemon restart xl2 runs as %d, was %d", d.PID, pid)
	}
	e.MustRF("pause", "xl2")
	e.MustRF("unpause", "xl2")
	e.Console("xl2").Do("echo again-$((6*7))", "again-42", 30*time.Second)
	if log := e.MustRF("log", "xl2"); !strings.Contains(log, "renamed-42") {
		t.Fatalf("log xl2 lacks the console from before the restart:\n%s", tail(log, 2000))
	}
	e.MustRF("undefine", "other")
}
