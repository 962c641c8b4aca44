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

// Parse parses fs over args and returns the positional arguments, which
// must number min..max (max < 0: no limit).
func Parse(fs *flag.FlagSet, args []string, min, max int) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, UsageError("help requested")
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

// List is a repeatable flag.
type List []string

func (l *List) String() string     { return strings.Join(*l, ",") }
func (l *List) Set(v string) error { *l = append(*l, v); return nil }
