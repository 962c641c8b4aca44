package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

func TestSaveRestore(t *testing.T) {
	e := NewEnv(t)
	c := e.Boot("svr", "")
	c.Send(`i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done &`)
	c.WaitFor("tick10", 0, 20*time.Second)

	// save -c: a checkpoint, the domain keeps running.
	ckpt := filepath.Join(e.Dir, "ckpt.save")
	e.MustRF("save", "-c", "svr", ckpt)
	n := lastTick(t, c.Output())
	c.WaitFor("tick"+strconv.Itoa(n+3), 0, 10*time.Second)

	file := filepath.Join(e.Dir, "svr.save")
	e.MustRF("save", "svr", file)
	before := lastTick(t, c.Output())
	if len(e.List()) != 0 || len(e.QEMUs()) != 0 {
		t.Fatal("save without -c left the domain running")
	}

	// Damaged files are refused before anything starts.
	data, _ := os.ReadFile(file)
	flipped := filepath.Join(e.Dir, "flipped.save")
	bad := append([]byte(nil), data...)
	bad[len(bad)/2] ^= 0x40
	os.WriteFile(flipped, bad, 0o600)
	truncated := filepath.Join(e.Dir, "truncated.save")
	os.WriteFile(truncated, data[:len(data)*2/3], 0o600)
	foreign := filepath.Join(e.Dir, "foreign.save")
	os.WriteFile(foreign, []byte("Xen saved domain, xl format\n \x00 \r"), 0o600)
	for f, want := range map[string]string{flipped: "checksum mismatch", truncated: "truncated", foreign: "wrong magic"} {
		r := e.RF("restore", f)
		if r.Code == 0 || !strings.Contains(r.Stderr, want) {
			t.Fatalf("restore %s: %+v, want %q", filepath.Base(f), r, want)
		}
		if len(e.List()) != 0 || len(e.QEMUs()) != 0 {
			t.Fatalf("a refused restore left something")
		}
	}

	// Restore resumes the counter where it stopped: no reboot, no reset.
	e.MustRF("restore", "-p", file)
	if d := e.Domain("svr"); d.State != api.StatePaused {
		t.Fatalf("restore -p: %s", d.State)
	}
	c2 := e.Console("svr")
	off := len(c2.Output())
	e.MustRF("unpause", "svr")
	end := c2.WaitFor("tick"+strconv.Itoa(before+3), off, 20*time.Second)
	after := c2.Output()[off:end]
	if strings.Contains(after, "tick0\r") || strings.Contains(after, image0) {
		t.Fatalf("the restored guest restarted:\n%s", tail(after, 500))
	}
	first := firstTick(after)
	if first < 0 || first > before+2 || first < before-2 {
		t.Fatalf("counter after restore starts at %d, was %d when saved", first, before)
	}
	t.Logf("counter %d when saved, %d first after restore", before, first)
	// The same file again: the name is taken.
	if r := e.RF("restore", file); r.Code == 0 || !strings.Contains(r.Stderr, "already exists") {
		t.Fatalf("restore over a running domain: %+v", r)
	}
}

const image0 = "ringfence: guest ready"

func firstTick(s string) int {
	m := tickRE.FindStringSubmatch(s)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
