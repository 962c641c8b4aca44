// Package cli is the `ringfence` command line: one table of verbs (like
// xl's xl_cmdtable.c), each a small function that parses its flags and
// calls the daemon through internal/client.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
	"github.com/ringfence/ringfence/internal/cmdline"
)

// env is what every verb gets.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	socket string
	// socketGiven: --socket or RINGFENCE_SOCKET named it (serve listens
	// there rather than in its run dir).
	socketGiven bool
	host        Host
	// remoteName is --remote NAME (or RINGFENCE_REMOTE); remote is the
	// client of the remote chosen (nil: the unix socket).
	remoteName string
	remote     *client.Client
	// intr is Ctrl-C's handling while a verb waits (waitCtx).
	intr *interrupt
}

// Host runs the commands that act on this host itself rather than through
// the API: the daemon, its store's maintenance, and the hidden commands
// the daemon re-executes itself as. cmd/ringfence wires it to
// internal/daemon, so the CLI stays a client and never imports the daemon.
// Each prints its own errors and returns the exit code.
type Host struct {
	Serve func(args []string, socket string, stderr io.Writer) int
	Store func(args []string, stdout, stderr io.Writer) int
	// Hidden are the internal commands by name (not in help).
	Hidden map[string]func(args []string) int
	// ServeFlags are serve's flags (for its help, and ringfence.conf(5):
	// each is a key of the host's settings file).
	ServeFlags func() *flag.FlagSet
	// StoreFlags are store's (check and restore share them).
	StoreFlags func() *flag.FlagSet
}

// hostVerb runs a Host command as a verb.
func hostVerb(run func(e *env, args []string) int) func(e *env, args []string) error {
	return func(e *env, args []string) error {
		if code := run(e, args); code != 0 {
			return exitError{code}
		}
		return nil
	}
}

func (e *env) client() *client.Client {
	if e.remote != nil {
		return e.remote
	}
	return client.New(e.socket)
}

// Run executes the command line and returns the process exit code (see
// exitCode: 0 ok, 1 failed, 2 usage, 3 not found, 4 refused).
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer, host Host) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, socket: os.Getenv("RINGFENCE_SOCKET"), host: host, remoteName: os.Getenv("RINGFENCE_REMOTE")}
	e.socketGiven = e.socket != ""
	if e.socket == "" {
		e.socket = api.SocketPath(api.DefaultRunDir)
	}
	args, code := e.globalOptions(args)
	if code >= 0 {
		return code
	}
	if len(args) > 0 {
		if run, ok := host.Hidden[args[0]]; ok {
			return run(args[1:])
		}
		if args[0] == completeVerb {
			return e.finish(completeVerb, runComplete(e, args[1:]))
		}
	}
	if len(args) == 0 {
		printOverview(stdout)
		return 0
	}
	v, ok := lookupVerb(args[0])
	if !ok {
		fmt.Fprintf(stderr, "ringfence: unknown command %q; see `ringfence help`\n", args[0])
		return exitUsage
	}
	if wantsHelp(args[1:]) {
		return e.finish(v.name, printVerbHelp(e, v))
	}
	var err error
	if !v.local {
		err = e.connect()
	}
	if err == nil {
		err = v.run(e, args[1:])
	}
	if e.intr != nil && e.intr.end() {
		return 130 // detached by a second Ctrl-C, as a shell reports SIGINT
	}
	return e.finish(v.name, err)
}

// globalOptions takes the options before the verb; code >= 0 means the
// command line is done (--help, --version, a bad option).
func (e *env) globalOptions(args []string) ([]string, int) {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		a := args[0]
		switch {
		case a == "--socket" && len(args) > 1:
			e.socket, e.socketGiven = args[1], true
			args = args[2:]
		case strings.HasPrefix(a, "--socket="):
			e.socket, e.socketGiven = strings.TrimPrefix(a, "--socket="), true
			args = args[1:]
		case a == "--remote" && len(args) > 1:
			e.remoteName = args[1]
			args = args[2:]
		case strings.HasPrefix(a, "--remote="):
			e.remoteName = strings.TrimPrefix(a, "--remote=")
			args = args[1:]
		case a == "-h" || a == "--help" || a == "-help":
			printOverview(e.stdout)
			return nil, 0
		case a == "--version" || a == "-version" || a == "-V":
			fmt.Fprintln(e.stdout, "ringfence", api.Release)
			return nil, 0
		default:
			fmt.Fprintf(e.stderr, "ringfence: unknown option %s (before the command: --socket PATH, --remote NAME, --help, --version)\n", a)
			return nil, exitUsage
		}
	}
	return args, -1
}

// finish prints a verb's error as its exit code says and returns the code.
func (e *env) finish(name string, err error) int {
	code := exitCode(err)
	var ue usageError
	var ee exitError
	switch {
	case code == exitOK:
	case errors.As(err, &ee):
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "ringfence %s: %s\n", name, ue.msg)
		if v, ok := lookupVerb(name); ok {
			printSynopses(e.stderr, v)
		}
	default:
		fmt.Fprintf(e.stderr, "ringfence %s: error: %v\n", name, err)
	}
	return code
}

// wrapWords folds text into lines of at most n columns (a longer word
// gets a line of its own), so help fits an 80-column terminal.
func wrapWords(text string, n int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) <= n:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	return append(lines, line)
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// parse parses flags anywhere among the arguments (xl allows
// `create web01.cfg -c`) and returns the positional ones.
func parse(fs *flag.FlagSet, args []string, min, max int) ([]string, error) {
	pos, err := cmdline.Parse(fs, args, min, max)
	if errors.Is(err, cmdline.ErrHelp) {
		return nil, helpRequest{fs}
	}
	if err != nil {
		return nil, usageError{err.Error()}
	}
	return pos, nil
}

// helpRequest is a verb's -h/--help: it carries the verb's flags, which
// help prints (see flagSets).
type helpRequest struct{ fs *flag.FlagSet }

func (helpRequest) Error() string { return "help requested" }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func ctx() context.Context { return context.Background() }
