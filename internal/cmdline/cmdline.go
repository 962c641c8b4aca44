// Package cmdline is the one flag helper of Ringfence's commands (the
// CLI's verbs and the daemon's host-side commands): positional arguments
// may sit between flags, as in `ringfence create web01.cfg -c`.
package cmdline

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// UsageError is a command line that does not parse: the caller prints it
// with the command's usage and exits 2.
type UsageError string

func (u UsageError) Error() string { return string(u) }

// ErrHelp is returned by Parse for -h, -help or --help: the caller prints
// the command's help (a usage error to callers that have none).
var ErrHelp error = UsageError("help requested")

// Parse parses fs over args and returns the positional arguments, which
// must number min..max (max < 0: no limit).
func Parse(fs *flag.FlagSet, args []string, min, max int) ([]string, error) {
	fs.SetOutput(io.Discard)
	args = unbundle(fs, args)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, ErrHelp
			}
			return nil, UsageError(err.Error())
		}
		if args = fs.Args(); len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	if len(pos) < min || (max >= 0 && len(pos) > max) {
		return nil, UsageError(fmt.Sprintf("expected %d to %d arguments, got %d", min, max, len(pos)))
	}
	return pos, nil
}

// unbundle splits bundled one-letter flags as getopt does (`create -pc`
// is `create -p -c`): an argument of one dash whose letters are all
// one-letter flags, every one a switch but perhaps the last (which then
// takes the next argument). Anything else, a flag of that name included
// (-json), is left as it is. "--" ends the flags.
func unbundle(fs *flag.FlagSet, args []string) []string {
	var out []string
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' || strings.Contains(a, "=") || fs.Lookup(a[1:]) != nil {
			out = append(out, a)
			continue
		}
		var split []string
		for j, r := range a[1:] {
			f := fs.Lookup(string(r))
			if f == nil || (!isBool(f) && j != len(a)-2) {
				split = nil
				break
			}
			split = append(split, "-"+string(r))
		}
		if split == nil {
			split = []string{a}
		}
		out = append(out, split...)
	}
	return out
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// List is a repeatable flag.
type List []string

func (l *List) String() string     { return strings.Join(*l, ",") }
func (l *List) Set(v string) error { *l = append(*l, v); return nil }
