package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

// testHost has serve's flags like the real wiring (cmd/ringfence), so
// serve's help and ringfence.conf(5) are checked too.
func testHost() Host {
	return Host{ServeFlags: func() *flag.FlagSet {
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.String("state-dir", "/var/lib/ringfence", "state directory")
		fs.Int("reserve-mem", 0, "host memory kept from domains in MiB")
		return fs
	}, StoreFlags: func() *flag.FlagSet {
		fs := flag.NewFlagSet("store", flag.ContinueOnError)
		fs.Bool("json", false, "check: print JSON")
		return fs
	}}
}

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(args, strings.NewReader(""), &out, &errb, testHost())
	return out.String(), errb.String(), code
}

// TestHelpEveryVerb walks the table: every verb's help, asked three ways,
// prints its synopsis, every flag of every subcommand and an example on
// stdout, exits 0 and fits 80 columns.
func TestHelpEveryVerb(t *testing.T) {
	t.Setenv("RINGFENCE_SOCKET", "/nonexistent/ringfence.sock")
	inGroup := map[string]bool{}
	for _, g := range groups {
		inGroup[g.name] = true
	}
	for _, v := range verbs {
		if !inGroup[v.group] || v.summary == "" || !strings.HasPrefix(v.example, v.name) {
			t.Errorf("%s: needs a group, a summary and an example that starts with the verb (%q)", v.name, v.example)
		}
		e := &env{stdout: new(bytes.Buffer), stderr: new(bytes.Buffer), host: testHost()}
		subs, sets := flagSets(e, v)
		if v.subs != nil && len(subs) != len(v.subs) {
			t.Errorf("%s: only %v of its subcommands %v answered --help with their flags", v.name, subs, v.subs)
		}
		if v.subs == nil && len(sets) != 1 {
			t.Errorf("%s: --help did not reach its flag parsing", v.name)
		}
		first, stderr, code := run(t, v.name, "--help")
		if code != 0 || stderr != "" {
			t.Errorf("%s --help: exit %d, stderr %q", v.name, code, stderr)
		}
		for _, other := range [][]string{{"help", v.name}, {v.name, "-h"}} {
			if out, _, code := run(t, other...); code != 0 || out != first {
				t.Errorf("%v: exit %d, and not the same help as --help", other, code)
			}
		}
		// The usage folds at 80 columns: compare it unfolded.
		flat := regexp.MustCompile(`\n {8,}`).ReplaceAllString(first, " ")
		if u := "usage: ringfence " + synopses(v)[0] + "\n"; !strings.Contains(flat, u) {
			t.Errorf("%s --help lacks %q:\n%s", v.name, u, first)
		}
		want := []string{"example:\n  ringfence " + v.example}
		for _, fs := range sets {
			fs.VisitAll(func(f *flag.Flag) { want = append(want, dashed(f.Name)) })
		}
		for _, w := range want {
			if !strings.Contains(first, w) {
				t.Errorf("%s --help lacks %q:\n%s", v.name, w, first)
			}
		}
		for _, l := range strings.Split(first, "\n") {
			if len(l) > 80 && !strings.HasPrefix(l, "  ringfence ") {
				t.Errorf("%s --help: a line over 80 columns: %q", v.name, l)
			}
		}
	}
}

// TestOverview: the grouped list names every verb, once, within 80
// columns; --version and a bad option.
func TestOverview(t *testing.T) {
	for _, args := range [][]string{nil, {"help"}, {"--help"}, {"-h"}} {
		out, _, code := run(t, args...)
		if code != 0 {
			t.Errorf("%v: exit %d", args, code)
		}
		for _, v := range verbs {
			if strings.Count(out, "\n  "+v.name+" ") != 1 {
				t.Errorf("%v: %s is not listed once", args, v.name)
			}
		}
		for _, g := range groups {
			if !strings.Contains(out, "\n"+g.title+":\n") {
				t.Errorf("%v: group %q missing", args, g.title)
			}
		}
		for _, l := range strings.Split(out, "\n") {
			if len(l) > 80 {
				t.Errorf("%v: line over 80 columns: %q", args, l)
			}
		}
	}
	if out, _, code := run(t, "--version"); code != 0 || out != "ringfence "+api.Release+"\n" {
		t.Errorf("--version: %q exit %d", out, code)
	}
	if _, errs, code := run(t, "--bogus"); code != exitUsage || !strings.Contains(errs, "--bogus") {
		t.Errorf("--bogus: exit %d %q", code, errs)
	}
	if _, errs, code := run(t, "help", "nosuchverb"); code != exitUsage || !strings.Contains(errs, "nosuchverb") {
		t.Errorf("help nosuchverb: exit %d %q", code, errs)
	}
}

// TestManPages: a page per verb with its flags and example, the main
// page with the exit codes, ringfence.conf(5) with serve's keys; every
// page formats without a warning when groff is installed.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	if _, errs, code := run(t, "gen", "man", dir); code != 0 {
		t.Fatalf("gen man: exit %d: %s", code, errs)
	}
	e := &env{host: testHost()}
	files := []string{"man8/ringfence.8", "man5/ringfence.conf.5"}
	for _, v := range verbs {
		files = append(files, "man8/ringfence-"+v.name+".8")
	}
	for _, f := range files {
		page, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if !strings.HasPrefix(string(page), ".TH ") || !strings.Contains(string(page), ".SH NAME\n") {
			t.Errorf("%s: not a man page", f)
		}
	}
	main, _ := os.ReadFile(filepath.Join(dir, "man8/ringfence.8"))
	for _, c := range exitCodes {
		if !strings.Contains(string(main), fmt.Sprintf(".B %d\n", c.code)) {
			t.Errorf("ringfence.8 lacks exit code %d", c.code)
		}
	}
	conf, _ := os.ReadFile(filepath.Join(dir, "man5/ringfence.conf.5"))
	for _, key := range []string{".B state_dir", ".B reserve_mem"} {
		if !strings.Contains(string(conf), key) {
			t.Errorf("ringfence.conf.5 lacks %s", key)
		}
	}
	for _, v := range verbs {
		page, _ := os.ReadFile(filepath.Join(dir, "man8/ringfence-"+v.name+".8"))
		for _, sec := range flagSections(e, v) {
			for _, d := range sec.flags {
				if !strings.Contains(string(page), roff(d.head())) {
					t.Errorf("ringfence-%s.8 lacks %s", v.name, d.head())
				}
			}
		}
	}
	if _, err := exec.LookPath("groff"); err != nil {
		t.Log("groff not installed: pages not formatted")
		return
	}
	for _, f := range files {
		out, err := exec.Command("groff", "-man", "-z", "-ww", "-t", filepath.Join(dir, f)).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("groff %s: %v\n%s", f, err, out)
		}
	}
}

// TestCompletions: each shell's script names every verb; bash's (and
// zsh's and fish's where installed) parses.
func TestCompletions(t *testing.T) {
	for shell, check := range map[string][]string{"bash": {"bash", "-n"}, "zsh": {"zsh", "-n"}, "fish": {"fish", "--no-execute"}} {
		out, errs, code := run(t, "gen", "completion", shell)
		if code != 0 {
			t.Fatalf("gen completion %s: exit %d: %s", shell, code, errs)
		}
		for _, v := range verbs {
			if !strings.Contains(out, v.name) {
				t.Errorf("%s completion lacks %s", shell, v.name)
			}
		}
		if !strings.Contains(out, completeVerb+" domains") {
			t.Errorf("%s completion does not ask the daemon for domain names", shell)
		}
		if _, err := exec.LookPath(check[0]); err != nil {
			if shell == "bash" {
				t.Errorf("bash is not installed")
			}
			continue
		}
		f := filepath.Join(t.TempDir(), "c")
		os.WriteFile(f, []byte(out), 0o644)
		if res, err := exec.Command(check[0], append(check[1:], f)...).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", shell, err, res)
		}
	}
	if _, _, code := run(t, "gen", "completion", "tcsh"); code != exitUsage {
		t.Errorf("gen completion tcsh: exit %d", code)
	}
}

// TestArgKinds: completion offers domains, files or subcommands where
// the synopsis says so.
func TestArgKinds(t *testing.T) {
	for name, want := range map[string]string{"console": "domain", "create": "file", "restore": "file", "vcpu-set": "domain",
		"snapshot": "domain", "pool": "", "token": "", "shutdown": "domain", "config": "file", "domname": ""} {
		v, _ := lookupVerb(name)
		if got := argKind(v); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

func TestExitCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{helpRequest{}, 0},
		{usageError{"x"}, 2},
		{fmt.Errorf("wrapped: %w", usageError{"x"}), 2},
		{api.Errorf(api.ErrNotFound, "no domain"), 3},
		{&api.RemoteError{Message: "no such pool", Class: "not-found"}, 3},
		{&api.RemoteError{Message: "needs permission", Class: "forbidden"}, 4},
		{&api.RemoteError{Message: "bad token", Class: "unauthorized"}, 4},
		{api.Errorf(api.ErrInsufficient, "not enough memory"), 4},
		{api.Errorf(api.ErrConflict, "exists"), 1},
		{errors.New("connection refused"), 1},
		{exitError{5}, 5},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("%v: exit %d, want %d", c.err, got, c.want)
		}
	}
}

// TestSynopses: a usage splits into its alternatives at the " | " outside
// brackets only.
func TestSynopses(t *testing.T) {
	for _, c := range []struct {
		usage string
		want  []string
	}{
		{"pool create NAME [--tenant T | --shared] | pool list", []string{"pool create NAME [--tenant T | --shared]", "pool list"}},
		{"list [--all] [-l | -v] [--json]", []string{"list [--all] [-l | -v] [--json]"}},
		{"a [b [c | d]] | e | f [g|h]", []string{"a [b [c | d]]", "e", "f [g|h]"}},
		{"version", []string{"version"}},
	} {
		if got := synopses(verb{usage: c.usage}); strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%q: %q, want %q", c.usage, got, c.want)
		}
	}
}
