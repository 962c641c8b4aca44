package domain

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

func TestFlags(t *testing.T) {
	for state, want := range map[api.State]string{
		api.StateRunning: "r-----", api.StateBlocked: "-b----", api.StatePaused: "--p---",
		api.StateShutdown: "---s--", api.StateCrashed: "---sc-", api.StateDying: "-----d",
	} {
		if got := Flags(state); got != want {
			t.Errorf("%s: %s, want %s", state, got, want)
		}
	}
}

// The console keeps exactly the last ConsoleHistory bytes, in memory and
// on disk across a daemon restart; the log file is rotated at its bound;
// a new domain of the same name starts a fresh history while the log
// keeps the earlier one's output.
func TestConsoleHistory(t *testing.T) {
	log := filepath.Join(t.TempDir(), "console.log")
	c := newConsole(log)
	_, ch, detach := c.Attach()
	defer detach()
	var all []byte
	for i := 0; i < 450; i++ { // 4.5 MiB: one rotation
		chunk := bytes.Repeat([]byte{byte('a' + i%26)}, 10<<10)
		c.append(chunk)
		all = append(all, chunk...)
		<-ch
	}
	want := all[len(all)-ConsoleHistory:]
	if !bytes.Equal(c.History(), want) {
		t.Fatalf("history is not the last %d bytes", ConsoleHistory)
	}
	fi, _ := os.Stat(log)
	if fi.Size() > consoleLogMax {
		t.Fatalf("console.log grew to %d bytes", fi.Size())
	}
	if _, err := os.Stat(log + ".1"); err != nil {
		t.Fatalf("no rotated console.log.1: %v", err)
	}
	reloaded := newConsole(log)
	if !bytes.Equal(reloaded.History(), want) {
		t.Fatalf("history not restored from console.log (%d bytes)", len(reloaded.History()))
	}

	fresh := freshConsole(log, "web")
	if len(fresh.History()) != 0 {
		t.Fatalf("a new domain's console replays %d bytes of an earlier one's", len(fresh.History()))
	}
	fresh.append([]byte("second life\n"))
	if got := string(newConsole(log).History()); got != "second life\n" {
		t.Fatalf("after a daemon restart the new domain's history is %q", tail(got))
	}
	b, _ := os.ReadFile(log)
	if !bytes.Contains(b, want[len(want)-100:]) || !bytes.Contains(b, []byte(consoleMark+`"web"`)) {
		t.Fatal("the log lost the earlier domain's output or the mark")
	}
}

func tail(s string) string {
	if len(s) > 80 {
		return s[len(s)-80:]
	}
	return s
}
