package chaos

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	faults := Plan(rand.New(rand.NewPCG(7, 7)), 700, 3, time.Second, 3*time.Second)
	kinds := map[Kind]int{}
	owner := 0
	for _, f := range faults {
		kinds[f.Kind]++
		if f.Host == -1 {
			owner++
		} else if f.Host < 0 || f.Host >= 3 {
			t.Fatalf("a fault on host %d of 3", f.Host)
		}
		if f.Hold < time.Second || f.Hold >= 3*time.Second {
			t.Fatalf("hold %s outside [1s, 3s)", f.Hold)
		}
	}
	for _, k := range Kinds {
		if kinds[k] < 50 {
			t.Errorf("%s drawn %d times of 700: the mix is not random over every kind", k, kinds[k])
		}
	}
	if owner < 350 || owner > 580 {
		t.Errorf("%d of 700 aimed at the owner, want about two thirds", owner)
	}
}

// fakeHost is a process tree standing for a host: a "daemon" (sh) with
// a child that names the host's dir (as a QEMU names its run dir) and
// a grandchild that does not.
type fakeHost struct {
	dir string
	cmd *exec.Cmd
}

func (h *fakeHost) Name() string     { return "fake" }
func (h *fakeHost) Index() int       { return 1 }
func (h *fakeHost) StateDir() string { return h.dir }
func (h *fakeHost) Procs() []int     { return HostProcs(h.cmd.Process.Pid, h.dir) }
func (h *fakeHost) Restart() error   { return nil }

func startFake(t *testing.T) *fakeHost {
	dir := t.TempDir()
	script := filepath.Join(dir, "qemu.sh")
	os.WriteFile(script, []byte("sleep 60 & sleep 60\n"), 0o755)
	cmd := exec.Command("sh", "-c", "sh "+script+" & exec sleep 60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &fakeHost{dir: dir, cmd: cmd}
	t.Cleanup(func() {
		for _, p := range h.Procs() {
			syscall.Kill(p, syscall.SIGKILL)
		}
		cmd.Wait()
	})
	// The tree: sleep (the daemon) <- sh qemu.sh <- two sleeps.
	deadline := time.Now().Add(5 * time.Second)
	for len(h.Procs()) < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return h
}

func state(pid int) string {
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return "gone"
	}
	return strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))[0]
}

func itoa(n int) string { return fmt.Sprint(n) }

// TestHostFaults: the process faults on a real process tree: a stop
// stops only the daemon, a freeze every process, a kill every process.
func TestHostFaults(t *testing.T) {
	for _, tc := range []struct {
		kind             Kind
		daemon, others   string // states after the fault ("T" stopped)
		healedD, healedO string
	}{
		{Stop, "T", "S", "S", "S"},
		{Freeze, "T", "T", "S", "S"},
		{Kill, "Z", "gone", "Z", "gone"},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			h := startFake(t)
			procs := h.Procs()
			if len(procs) != 4 || procs[0] != h.cmd.Process.Pid {
				t.Fatalf("the host's processes: %v (daemon %d), want the daemon first and 3 more", procs, h.cmd.Process.Pid)
			}
			c := &Cluster{Hosts: []Host{h}}
			_, heal, err := c.Inject(Fault{Kind: tc.kind, Host: 0})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			check := func(when, d, o string) {
				if s := state(procs[0]); s != d {
					t.Errorf("%s: the daemon is %s, want %s", when, s, d)
				}
				for _, p := range procs[1:] {
					if s := state(p); s != o && !(o == "gone" && s == "Z") {
						t.Errorf("%s: process %d is %s, want %s", when, p, s, o)
					}
				}
			}
			check("after the fault", tc.daemon, tc.others)
			if err := heal(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			check("healed", tc.healedD, tc.healedO)
		})
	}
	if _, _, err := (&Cluster{}).Inject(Fault{Kind: Kill, Host: 0}); err == nil {
		t.Error("a fault on a host the cluster does not have was taken")
	}
	if slices.Contains(Kinds, Kind("nonsense")) {
		t.Error("Kinds lists an unknown kind")
	}
}
