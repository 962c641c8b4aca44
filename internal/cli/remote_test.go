package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseLifetime(t *testing.T) {
	for s, want := range map[string]time.Duration{"": 0, "30d": 30 * 24 * time.Hour, "12h": 12 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := parseLifetime(s); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"x", "-1d", "0d", "10ms", "d"} {
		if _, err := parseLifetime(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// TestRemotesFile: 0600, switch and remove, and which daemon a verb
// reaches: --remote, else a named socket, else the current remote.
func TestRemotesFile(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sub", "remotes.json")
	t.Setenv("RINGFENCE_CONFIG", cfg)
	rf := &remotesFile{Remotes: map[string]remote{"r1": {URL: "https://h:1", Token: "rf_a_x", Fingerprint: strings.Repeat("ab", 32)}}}
	if err := rf.save(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(cfg); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%v %v", st, err)
	}
	var out bytes.Buffer
	e := &env{stdout: &out, stderr: &out, socket: "/run/x.sock"}
	if err := runRemote(e, []string{"switch", "nope"}); err == nil {
		t.Fatal("switched to an unknown remote")
	}
	if err := runRemote(e, []string{"switch", "r1"}); err != nil {
		t.Fatal(err)
	}
	if err := e.connect(); err != nil || e.remote == nil || e.remote.Socket != "https://h:1" {
		t.Fatalf("the current remote: %v %v", e.remote, err)
	}
	e2 := &env{socket: "/run/x.sock", socketGiven: true}
	if err := e2.connect(); err != nil || e2.remote != nil {
		t.Fatalf("a named socket wins over the current remote: %v %v", e2.remote, err)
	}
	e3 := &env{remoteName: "local"}
	if err := e3.connect(); err != nil || e3.remote != nil {
		t.Fatalf("--remote local: %v %v", e3.remote, err)
	}
	if err := runRemote(e, []string{"list"}); err != nil || !strings.Contains(out.String(), "r1") || strings.Contains(out.String(), "rf_a_x") {
		t.Fatalf("list: %v %q", err, out.String())
	}
	if err := runRemote(e, []string{"remove", "r1"}); err != nil {
		t.Fatal(err)
	}
	rf, _ = loadRemotes()
	if len(rf.Remotes) != 0 || rf.Current != "" {
		t.Fatalf("after remove: %+v", rf)
	}
}

// A service with no HOME (systemd's ExecStop of ringfence-guests) still
// reaches the local socket: no config dir means no remotes.
func TestConnectWithoutHome(t *testing.T) {
	t.Setenv("RINGFENCE_CONFIG", "")
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", "")
	e := &env{}
	if err := e.connect(); err != nil || e.remote != nil {
		t.Fatalf("connect without HOME: %v (remote %v), want the local socket", err, e.remote)
	}
}
