package cli

import (
	"testing"
	"time"
)

// audit --since and --until take a time or a duration ago; anything else
// is one usage error that names the forms.
func TestAuditTime(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2026-03-01T10:00:00Z", time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), true},
		{"2026-03-01T10:00:00+02:00", time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC), true},
		{"1h", now.Add(-time.Hour), true},
		{"90m", now.Add(-90 * time.Minute), true},
		{"-1h", time.Time{}, false},
		{"yesterday", time.Time{}, false},
		{"2026-03-01", time.Time{}, false},
	} {
		got, err := auditTime("--since", c.in, now)
		if (err == nil) != c.ok || c.ok && !got.Equal(c.want) {
			t.Errorf("%q: %v %v, want %v (ok %v)", c.in, got, err, c.want, c.ok)
		}
	}
}
