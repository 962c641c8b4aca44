package domain

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

func TestFlags(t *testing.T) {
	for state, want := range map[string]string{
		api.StateRunning: "r-----", api.StateBlocked: "-b----", api.StatePaused: "--p---",
		api.StateShutdown: "---s--", api.StateCrashed: "---sc-", api.StateDying: "-----d",
	} {
		if got := Flags(state); got != want {
			t.Errorf("%s: %s, want %s", state, got, want)
		}
	}
}

// The console keeps exactly the last ConsoleHistory bytes, in memory and
// on disk across a daemon restart, and the log file stays bounded.
func TestConsoleHistory(t *testing.T) {
	log := filepath.Join(t.TempDir(), "console.log")
	c := newConsole(log)
	_, ch, detach := c.Attach()
	defer detach()
	var all []byte
	for i := 0; i < 100; i++ {
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
	if fi.Size() > 2*ConsoleHistory {
		t.Fatalf("console.log grew to %d bytes", fi.Size())
	}
	reloaded := newConsole(log)
	if !bytes.Equal(reloaded.History(), want) {
		t.Fatalf("history not restored from console.log (%d bytes)", len(reloaded.History()))
	}
}
