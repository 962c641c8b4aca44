package e2e

import (
	"context"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// The daemon is killed with SIGKILL at every point of define, create,
// start and the restart paths (on_reboot, on_crash), and at random
// moments of a create: 20 rounds. After each, the next daemon leaves a
// consistent host: every definition present, every QEMU accounted for (no
// orphan, none killed that ran a guest), no tap, cgroup, run dir or
// ledger entry without its domain, and each interrupted operation either
// finished or undone, never half-done.
func TestKillNineAnywhere(t *testing.T) {
	e := NewEnv(t)
	mustRun(t, "ip", "-n", e.Netns, "link", "add", "rfbr0", "type", "bridge")
	mustRun(t, "ip", "-n", e.Netns, "link", "set", "rfbr0", "up")
	vif := "vif = [ 'bridge=rfbr0' ]"
	defined := map[string]bool{}

	// crash runs act against a daemon that kills itself at point, then
	// starts a clean daemon and checks the host.
	rounds := 0
	crash := func(point string, act func()) {
		t.Helper()
		rounds++
		e.StopDaemon()
		e.DaemonEnv = []string{"RINGFENCE_CRASHPOINT=" + point}
		e.StartDaemon()
		act()
		e.WaitDaemonGone(60 * time.Second)
		e.DaemonEnv = nil
		e.StartDaemon()
		checkConsistent(t, e, defined, point)
	}
	present := func(name string) (api.Domain, bool) { return findDomain(e.ListAll(), name) }

	// define
	crash("define:saved", func() { e.RF("define", e.WriteConfig("d1", vif)) })
	defined["d1"] = true

	// create (transient): undone before its QEMU is recorded, finished after.
	for _, p := range []struct {
		point    string
		finished bool
	}{{"start:intent", false}, {"start:host-ready", false}, {"start:qemu-up", false}, {"start:recorded", true}, {"start:running", true}} {
		name := "c" + itoa(rounds)
		crash(p.point, func() { e.RF("create", e.WriteConfig(name, vif)) })
		d, ok := present(name)
		if ok != p.finished || ok && (d.PID == 0 || !vcpusRun(d)) {
			t.Fatalf("create killed at %s: present=%v %+v; want finished=%v (running)", p.point, ok, d, p.finished)
		}
		if ok {
			e.MustRF("destroy", name)
		}
	}

	// start of a defined domain: kept stopped before, running after.
	e.MustRF("define", e.WriteConfig("s", vif))
	defined["s"] = true
	for _, p := range []struct {
		point   string
		running bool
	}{{"start:intent", false}, {"start:host-ready", false}, {"start:qemu-up", false}, {"start:recorded", true}, {"start:running", true}} {
		crash(p.point, func() { e.RF("start", "s") })
		d := e.mustFind("s")
		if (d.PID != 0) != p.running || !p.running && !strings.Contains(d.LastReason, "interrupted") {
			t.Fatalf("start killed at %s: %+v; want running=%v", p.point, d, p.running)
		}
		if p.running {
			if !vcpusRun(d) {
				t.Fatalf("start killed at %s: state %s, want running (its vCPUs started)", p.point, d.State)
			}
			e.MustRF("destroy", "s")
		}
	}

	// on_reboot = restart (a hard reset): the restart is carried out.
	e.MustRF("create", e.WriteConfig("r", vif))
	for _, point := range []string{"exit:noted", "restart:before-start", "start:intent", "start:qemu-up", "start:recorded"} {
		before := e.Domain("r")
		crash(point, func() { e.RF("reset", "r") })
		d, ok := present("r")
		if !ok || d.PID == 0 || d.ID == before.ID || !vcpusRun(d) {
			t.Fatalf("restart killed at %s: present=%v %+v (was id %d); want a new incarnation running", point, ok, d, before.ID)
		}
	}
	// on_crash = restart, the QEMU killed under it.
	e.MustRF("create", e.WriteConfig("k", vif+"\non_crash = \"restart\""))
	for _, point := range []string{"exit:noted", "start:qemu-up"} {
		before := e.Domain("k")
		crash(point, func() { syscall.Kill(before.PID, syscall.SIGKILL) })
		if d, ok := present("k"); !ok || d.PID == 0 || d.ID == before.ID {
			t.Fatalf("on_crash restart killed at %s: present=%v %+v", point, ok, d)
		}
	}

	// And at random moments of a create, from outside.
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for rounds < 20 {
		rounds++
		name := "x" + itoa(rounds)
		f := e.WriteConfig(name, vif)
		delay := time.Duration(rng.Intn(1500)) * time.Millisecond
		done := make(chan struct{})
		go func() { e.RF("create", f); close(done) }()
		time.Sleep(delay)
		e.KillDaemon()
		<-done
		e.StartDaemon()
		checkConsistent(t, e, defined, "random "+delay.String())
		if d, ok := present(name); ok {
			if d.PID == 0 {
				t.Fatalf("a create killed at %s left %s stopped: %+v", delay, name, d)
			}
			e.MustRF("destroy", name)
		}
	}
	t.Logf("%d kill -9 rounds, the host consistent after each", rounds)
}

// checkConsistent asserts what must hold after any crash.
func checkConsistent(t *testing.T, e *Env, defined map[string]bool, when string) {
	t.Helper()
	all := e.ListAll()
	byName := map[string]api.Domain{}
	running := map[int]string{}
	taps := map[string]bool{}
	for _, d := range all {
		byName[d.Spec.Name] = d
		if d.PID != 0 {
			running[d.PID] = d.Spec.Name
			for _, tp := range d.Taps {
				taps[tp] = true
			}
		}
	}
	fail := func(format string, a ...any) {
		t.Helper()
		t.Fatalf("after a kill at %s: "+format+"\ndaemon log:\n%s", append([]any{when}, append(a, tail(e.DaemonLog(), 4000))...)...)
	}
	for name := range defined {
		if d, ok := byName[name]; !ok || !d.Defined {
			fail("the definition of %s is lost", name)
		}
	}
	qemus := e.QEMUs()
	sort.Ints(qemus)
	if len(qemus) != len(running) {
		fail("QEMUs %v, domains running %v", qemus, running)
	}
	for _, p := range qemus {
		if _, ok := running[p]; !ok {
			fail("QEMU pid %d belongs to no domain (%v)", p, running)
		}
	}
	for _, l := range regexp.MustCompile(`\d+: (vif[0-9.]+)[@:]`).FindAllStringSubmatch(e.Links(), -1) {
		if !taps[l[1]] {
			fail("tap %s belongs to no running domain (%v)", l[1], taps)
		}
	}
	for _, n := range e.names {
		if d, ok := byName[n]; ok && d.PID != 0 {
			continue
		}
		for _, dir := range cgroupDirs(e.State, n) {
			if _, err := os.Stat(dir); err == nil {
				fail("cgroup %s left for %s, which does not run", dir, n)
			}
		}
	}
	runDirs, _ := filepath.Glob(filepath.Join(e.Dir, "run", "domains", "*"))
	for _, dir := range runDirs {
		if _, ok := byName[filepath.Base(dir)]; !ok {
			fail("run dir %s for no domain", dir)
		}
	}
	h, err := e.Client.Host(context.Background())
	if err != nil {
		fail("info: %v", err)
	}
	var held []string
	for _, le := range h.Ledger.Entries {
		held = append(held, le.Domain)
		if d := byName[le.Domain]; d.PID == 0 {
			fail("the ledger holds resources for %s, which does not run", le.Domain)
		}
	}
	if len(held) != len(running) {
		fail("the ledger holds %v, the domains running are %v", held, running)
	}
	if len(h.Warnings) > 0 {
		fail("host warnings: %v", h.Warnings)
	}
}

// vcpusRun: the domain's vCPUs were started (not paused, not stopped).
// The list shows such a domain "blocked" (xl's b) at a moment none of
// its vCPU threads is on a host CPU: an idle or just-started guest.
func vcpusRun(d api.Domain) bool {
	return d.State == api.StateRunning || d.State == api.StateBlocked
}
