package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// lastSeq is the newest event's seq the daemon holds.
func lastSeq(t *testing.T, e *Env) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var last uint64
	e.Client.Events(ctx, 0, func(ev api.Event) error {
		last = max(last, ev.Seq)
		return nil
	})
	if last == 0 {
		t.Fatal("the daemon holds no events")
	}
	return last
}

// restartKeepsRecords: the daemon is killed while an export runs and
// started again: the finished save (done) is still shown with its
// result, the export as failed, interrupted by the restart; event seqs
// go on past the last one given, and a since from before the restart is
// answered with a resync.
func restartKeepsRecords(t *testing.T, e *Env, done string) {
	t.Helper()
	running := strings.TrimSpace(e.MustRF("export", "opg", "-o", filepath.Join(e.Dir, "interrupted.rfx"), "--async"))
	head := lastSeq(t, e)
	e.KillDaemon()
	e.StartDaemon()
	var op api.Operation
	if err := json.Unmarshal([]byte(e.MustRF("operation", "show", done, "--json")), &op); err != nil || op.Status != api.OpSuccess || op.Kind != "save" {
		t.Errorf("a finished save after the restart: %+v %v", op, err)
	}
	op = api.Operation{}
	if err := json.Unmarshal([]byte(e.MustRF("operation", "show", running, "--json")), &op); err != nil || op.Status != api.OpFailure || !strings.HasPrefix(op.Error, "interrupted: the daemon restarted at ") {
		t.Errorf("the export the daemon died under: %+v %v", op, err)
	}
	if r := e.RF("operation", "wait", running); r.Code == 0 || !strings.Contains(r.Stderr, "interrupted") {
		t.Errorf("operation wait of an interrupted one: %+v", r)
	}
	var got []api.Event
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Client.Events(ctx, int64(head), func(ev api.Event) error {
		if got = append(got, ev); len(got) == 2 {
			cancel()
		}
		return nil
	})
	if len(got) != 2 || got[0].Type != api.EventResync || got[1].Seq <= head {
		t.Errorf("events since %d (before the restart): %+v, want a resync, then seqs past %d", head, got, head)
	}
}

// startCLI runs the CLI against e's daemon in the background.
func startCLI(t *testing.T, e *Env, stderr *strings.Builder, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"--socket", e.Socket}, args...)...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// interruptMigration: Ctrl-C (SIGINT) to `ringfence migrate` waiting on
// the migration cancels its operation, as xl does: the CLI says so and
// fails, the operation ends cancelled, the guest runs on here (pid).
// (A second Ctrl-C, which detaches, is internal/cli's TestInterrupt: here
// the cancel often ends the wait before a second signal could arrive.)
func interruptMigration(t *testing.T, src, dst *Env, dstAddr string, pid int) {
	t.Helper()
	var stderr strings.Builder
	cmd := startCLI(t, src, &stderr, "migrate", "--max-downtime", "1", "mover", dstAddr)
	id := awaitMigrationOp(t, src)
	cmd.Process.Signal(syscall.SIGINT)
	if code := waitCLI(t, cmd, &stderr); code == 0 || !strings.Contains(stderr.String(), "cancelling operation "+id) {
		t.Fatalf("migrate after Ctrl-C: exit %d\n%s", code, stderr.String())
	}
	op, err := src.Client.WaitOperation(context.Background(), id, 60*time.Second)
	if err != nil || op.Status != api.OpCancelled {
		t.Fatalf("the migration Ctrl-C cancelled: %+v %v", op, err)
	}
	dst.Await("the destination to clean up after Ctrl-C", 40*time.Second, func() bool { return len(dst.List()) == 0 && len(dst.QEMUs()) == 0 })
	if d := src.Domain("mover"); d.PID != pid {
		t.Fatalf("the source after Ctrl-C: %+v", d)
	}
}

// awaitMigrationOp is the id of the migration running from src once it
// streams.
func awaitMigrationOp(t *testing.T, src *Env) string {
	t.Helper()
	var id string
	src.Await("the waited migration to stream", 20*time.Second, func() bool {
		ops, err := src.Client.Operations(context.Background())
		for _, op := range ops {
			if err == nil && op.Kind == "migrate" && !op.Done() && op.Progress != nil && op.Progress.Done > 10<<20 {
				id = op.ID
			}
		}
		return id != ""
	})
	return id
}

// waitCLI waits for a CLI started by startCLI and returns its exit code.
func waitCLI(t *testing.T, cmd *exec.Cmd, stderr *strings.Builder) int {
	t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the CLI did not end after Ctrl-C:\n%s", stderr.String())
	}
	return cmd.ProcessState.ExitCode()
}
