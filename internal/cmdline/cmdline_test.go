package cmdline

import (
	"errors"
	"flag"
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		args     []string
		min, max int
		pos      []string
		err      string
	}{
		{[]string{"a.cfg", "-c"}, 1, 1, []string{"a.cfg"}, ""},
		{[]string{"-c", "a", "b"}, 0, -1, []string{"a", "b"}, ""},
		{[]string{"a", "b"}, 0, 1, nil, "expected 0 to 1 arguments, got 2"},
		{[]string{}, 1, 1, nil, "expected 1 to 1 arguments, got 0"},
		{[]string{"--nope"}, 0, 0, nil, "flag provided but not defined: -nope"},
		{[]string{"-h"}, 0, 0, nil, "help requested"},
		// Bundled one-letter flags, as getopt takes them.
		{[]string{"a.cfg", "-pc"}, 1, 1, []string{"a.cfg"}, ""},
		{[]string{"-cpd", "5", "x"}, 1, 1, []string{"x"}, ""},
		{[]string{"-cdp", "5"}, 0, 0, nil, "flag provided but not defined: -cdp"},
		{[]string{"-pq"}, 0, 0, nil, "flag provided but not defined: -pq"},
		{[]string{"-json"}, 0, 0, nil, ""},
		{[]string{"--", "-pc"}, 1, 1, []string{"-pc"}, ""},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.Bool("c", false, "")
		fs.Bool("p", false, "")
		fs.Int("d", 0, "")
		fs.Bool("json", false, "")
		pos, err := Parse(fs, c.args, c.min, c.max)
		var ue UsageError
		if c.err != "" {
			if !errors.As(err, &ue) || err.Error() != c.err {
				t.Errorf("%v: error %v, want usage error %q", c.args, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(pos, c.pos) {
			t.Errorf("%v: %v, %v; want %v", c.args, pos, err, c.pos)
		}
	}
	var l List
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Var(&l, "d", "")
	Parse(fs, []string{"-d", "a", "-d", "b,c"}, 0, 0)
	if l.String() != "a,b,c" || len(l) != 2 {
		t.Errorf("List: %q", l)
	}
}
