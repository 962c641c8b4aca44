package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgressLine: on a terminal every redraw is one \r line clipped to
// the width (never a newline until the end); elsewhere one line per
// update, without \r, at most every nonTTYEvery. Rate and time left
// appear once they can be told.
func TestProgressLine(t *testing.T) {
	for _, cols := range []int{0, 30, 80} {
		var b bytes.Buffer
		clock := time.Unix(1000, 0)
		p := &progressLine{w: &b, width: func() int { return cols }, now: func() time.Time { return clock }}
		for i := int64(0); i <= 10; i++ {
			p.update(i<<20*10, 100<<20, "saving: a long description of what is going on right now")
			clock = clock.Add(time.Second)
		}
		p.end()
		out := b.String()
		if cols == 0 {
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if strings.Contains(out, "\r") || len(lines) != 6 {
				t.Errorf("no terminal: want 6 plain lines (one per 2 s), got %q", out)
			}
			if !strings.Contains(out, "10.0 MiB/s, 6s left") {
				t.Errorf("no terminal: no rate and time left in %q", out)
			}
			continue
		}
		if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
			t.Errorf("%d columns: a redraw added a line: %q", cols, out)
		}
		for _, seg := range strings.Split(strings.TrimSuffix(out, "\n"), "\r")[1:] {
			if seg = strings.TrimSuffix(seg, "\x1b[K"); len(seg) > cols-1 {
				t.Errorf("%d columns: a line of %d: %q", cols, len(seg), seg)
			}
		}
	}
}

func TestEscapeKey(t *testing.T) {
	for in, want := range map[string]byte{"^]": 0x1d, "^A": 1, "^a": 1, "^^": 0x1e, "x": 'x'} {
		if got, err := escapeKey(in); err != nil || got != want {
			t.Errorf("%q: %#x %v, want %#x", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ab", "^1", "é"} {
		if _, err := escapeKey(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
	if escapeName(0x1d) != "Ctrl-]" {
		t.Errorf("escapeName: %q", escapeName(0x1d))
	}
}

// TestTopKeys: every interactive key names a sort key, no two keys the
// same one, each documented on the key line; -f keeps whole names.
func TestTopKeys(t *testing.T) {
	seen := map[string]bool{}
	for k, key := range topKeys {
		if topSorts[key] == nil || seen[key] {
			t.Errorf("key %c: sort %q unknown or taken twice", k, key)
		}
		seen[key] = true
		if !strings.Contains(topKeyHelp, string(k)+" "+key) {
			t.Errorf("key %c (%s) is not on the key line %q", k, key, topKeyHelp)
		}
	}
	if len(seen) != len(topSorts) {
		t.Errorf("%d sort keys, %d of them reachable from the keyboard", len(topSorts), len(seen))
	}
}
