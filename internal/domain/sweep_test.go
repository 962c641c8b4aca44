package domain

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/procfs"
	"github.com/ringfence/ringfence/internal/store"
)

// What Recover does with a run dir no store record names, by what is in
// it: a live process is evidence (never killed on a guess), a start that
// never ran guest code is undone, a dead dir is cleaned.
func TestRecoverRunDirsWithoutRecords(t *testing.T) {
	for _, tc := range []struct {
		name      string
		alive     bool
		runRecord *record // the copy a daemon keeps in the run dir
		wantAlive bool
		wantDir   bool
		wantAdmit bool // new domains admitted afterwards
	}{
		{name: "dead dir removed", alive: false, wantDir: false, wantAdmit: true},
		{name: "unknown QEMU left running, admissions refused", alive: true, wantAlive: true, wantDir: true, wantAdmit: false},
		{name: "interrupted start undone", alive: true, wantAlive: false, wantDir: false, wantAdmit: true,
			runRecord: &record{Spec: api.DomainSpec{Name: "ghost", MaxMemMiB: 64, MaxVCPUs: 1}, Starting: &startIntent{Kind: kindCreate, ID: 7}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := t.TempDir()
			dir := filepath.Join(run, "domains", "ghost")
			os.MkdirAll(dir, 0o700)
			if tc.runRecord != nil {
				b, _ := json.Marshal(tc.runRecord)
				os.WriteFile(filepath.Join(dir, "record.json"), b, 0o600)
			}
			var proc *exec.Cmd
			if tc.alive {
				// Stands in for a QEMU: its command line names the run dir.
				// Its own process group: sh may fork sleep rather than
				// exec it, and both name the dir until killed together.
				proc = exec.Command("sh", "-c", "sleep 60", filepath.Join(dir, "qmp.sock"))
				proc.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				if err := proc.Start(); err != nil {
					t.Fatal(err)
				}
				go proc.Wait()
				t.Cleanup(func() { syscall.Kill(-proc.Process.Pid, syscall.SIGKILL) })
			}
			st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			m := New(Options{Store: st, Ledger: host.NewLedger(4096, 512, 2, 1), RunDir: run, StateDir: t.TempDir(), LogDir: t.TempDir()})
			if err := m.Recover(context.Background()); err != nil {
				t.Fatal(err)
			}
			if tc.alive {
				gone := procfs.WaitGone([]int{proc.Process.Pid}, 2*time.Second)
				if gone == tc.wantAlive {
					t.Fatalf("process alive=%v, want %v", !gone, tc.wantAlive)
				}
			}
			if _, err := os.Stat(dir); (err == nil) != tc.wantDir {
				t.Fatalf("run dir kept=%v, want %v", err == nil, tc.wantDir)
			}
			m.mu.Lock()
			err = m.admit(api.DomainSpec{Name: "next", MaxMemMiB: 64, MaxVCPUs: 1}, "", "tcg")
			m.mu.Unlock()
			if (err == nil) != tc.wantAdmit {
				t.Fatalf("admission err=%v, want admitted=%v", err, tc.wantAdmit)
			}
			if tc.alive && tc.wantAlive {
				syscall.Kill(-proc.Process.Pid, syscall.SIGKILL)
				// Every process of the group must be reaped before the
				// sweep stops seeing it: retry (a loaded machine is slow).
				for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
					m.mu.Lock()
					err = m.admit(api.DomainSpec{Name: "next2", MaxMemMiB: 64, MaxVCPUs: 1}, "", "tcg")
					m.mu.Unlock()
					if err == nil || time.Now().After(deadline) {
						break
					}
				}
				if err != nil {
					t.Fatalf("still refused once the stray QEMU is gone: %v", err)
				}
			}
			if got := m.Count(); got != 0 {
				t.Fatalf("%d domains after recovery, want 0", got)
			}
		})
	}
}
