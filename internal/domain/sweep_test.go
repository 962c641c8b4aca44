package domain

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/store"
)

// A daemon that died between launching QEMU and saving the record left a
// runtime dir and a process; the next daemon's Recover removes both.
func TestRecoverSweepsInterruptedCreate(t *testing.T) {
	run := t.TempDir()
	dir := filepath.Join(run, "domains", "ghost")
	os.MkdirAll(dir, 0o700)
	// Stands in for the QEMU: its command line names the runtime dir.
	proc := exec.Command("sh", "-c", "sleep 60", filepath.Join(dir, "qmp.sock"))
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { proc.Wait(); close(exited) }()
	os.WriteFile(filepath.Join(dir, "qemu.pid"), []byte(strconv.Itoa(proc.Process.Pid)), 0o600)

	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m := New(Options{Store: st, Ledger: host.NewLedger(4096, 512, 2, 1), RunDir: run})
	if err := m.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		proc.Process.Kill()
		t.Fatal("orphaned process not killed")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("runtime dir not removed: %v", err)
	}
}
