package ha

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/procfs"
)

// sleeper is a process to fence.
func sleeper(t *testing.T, name string) (Proc, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	st, err := procfs.ReadStat(cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	return Proc{Domain: name, PID: cmd.Process.Pid, Start: st.StartTime}, cmd
}

// TestFencer: the HA guests are killed at the last renewal's send time
// plus TTL minus margin, not before, and only if there are any; a later
// renewal moves the deadline.
func TestFencer(t *testing.T) {
	for _, tc := range []struct {
		what    string
		guests  int
		renewAt []time.Duration // renewals, sent this long after the start
		wantAt  time.Duration   // the kill, after the start (0: none)
	}{
		{"no renewal after the first: killed at TTL-margin", 1, []time.Duration{0}, 700 * time.Millisecond},
		{"a later renewal moves the deadline", 2, []time.Duration{0, 400 * time.Millisecond}, 1100 * time.Millisecond},
		{"no HA guest: nothing to fence", 0, []time.Duration{0}, 0},
	} {
		t.Run(tc.what, func(t *testing.T) {
			var mu sync.Mutex
			var fencedAt time.Duration
			start := time.Now()
			f := &Fencer{TTL: time.Second, Margin: 300 * time.Millisecond, Files: Files{Dir: t.TempDir()},
				Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
				OnFence: func([]string, string) { mu.Lock(); fencedAt = time.Since(start); mu.Unlock() }}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var procs []Proc
			for i := 0; i < tc.guests; i++ {
				p, _ := sleeper(t, "g")
				procs = append(procs, p)
			}
			f.Start(ctx)
			f.Guard(procs)
			for _, at := range tc.renewAt {
				time.Sleep(time.Until(start.Add(at)))
				f.Renewed(start.Add(at))
			}
			time.Sleep(time.Until(start.Add(1500 * time.Millisecond)))
			mu.Lock()
			got := fencedAt
			mu.Unlock()
			if tc.wantAt == 0 {
				if got != 0 {
					t.Fatalf("fenced at %s with no HA guest", got)
				}
				return
			}
			if got < tc.wantAt || got > tc.wantAt+300*time.Millisecond {
				t.Fatalf("fenced at %s, want at %s (+ a tick)", got, tc.wantAt)
			}
			for _, p := range procs {
				if procfs.Alive(p.PID, p.Start) {
					t.Fatalf("pid %d survived the fence", p.PID)
				}
			}
		})
	}
}

// TestRelaunchFile: the domains fenced here survive a daemon restart;
// those fenced longer ago than the window, a missing or torn file, do not.
func TestRelaunchFile(t *testing.T) {
	f := Files{Dir: t.TempDir()}
	if got := f.ReadRelaunch(time.Minute); len(got) != 0 {
		t.Fatalf("no file: %v", got)
	}
	now := time.Now()
	if err := f.WriteRelaunch(map[string]time.Time{"fresh": now.Add(-10 * time.Second), "old": now.Add(-5 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	got := f.ReadRelaunch(time.Minute)
	if len(got) != 1 || !got["fresh"].Equal(now.Add(-10*time.Second).Round(0)) {
		t.Errorf("read back %v, want only fresh", got)
	}
	os.WriteFile(f.Relaunch(), []byte(`{"torn`), 0o600)
	if got := f.ReadRelaunch(time.Minute); len(got) != 0 {
		t.Errorf("a torn file: %v", got)
	}
}
