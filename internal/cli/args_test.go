package cli

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/client"
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

// hostPath: over the socket a path is made absolute here (the same
// host); over a remote it is the remote's, never resolved here: a
// relative one is refused, an absolute one passed on as it is.
func TestHostPath(t *testing.T) {
	local, remote := &env{}, &env{remote: &client.Client{}, remoteName: "site"}
	wd, _ := os.Getwd()
	for _, c := range []struct {
		e    *env
		in   string
		want string
		ok   bool
	}{
		{local, "media/cd.iso", filepath.Join(wd, "media/cd.iso"), true},
		{local, "/srv/cd.iso", "/srv/cd.iso", true},
		{remote, "/srv/../srv/cd.iso", "/srv/cd.iso", true},
		{remote, "cd.iso", "", false},
		{remote, "./cd.iso", "", false},
	} {
		got, err := c.e.hostPath("FILE", c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("%q (remote %v): %q %v", c.in, c.e.remote != nil, got, err)
		}
	}
}
