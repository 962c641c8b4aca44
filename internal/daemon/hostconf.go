package daemon

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/ringfence/ringfence/internal/config"
)

// DefaultHostConf is the host daemon's settings file, in the syntax of a
// domain file (xl.cfg): `state_dir = "/srv/ringfence"`, `vcpu_ratio = 2`,
// `disk_roots = [ "/srv/vm", "/var/lib/ringfence/pools" ]`.
const DefaultHostConf = "/etc/ringfence/ringfence.conf"

// notInConf are serve flags that make no sense in the host's file.
var notInConf = map[string]bool{"config": true, "boot-id-file": true}

// applyHostConf sets serve's flags from the host's settings file: each
// key is a flag's name with '_' for '-'. A flag given on the command line
// wins. Errors name file:line:col and say what is known.
func applyHostConf(fs *flag.FlagSet, path string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("the host's settings: %w", err)
	}
	settings, err := config.Parse(path, src)
	if err != nil {
		return err
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	seen := map[string]config.Pos{}
	for _, s := range settings {
		name := strings.ReplaceAll(s.Key, "_", "-")
		f := fs.Lookup(name)
		if f == nil || notInConf[name] {
			return fmt.Errorf("%s: unknown setting %q; the settings are: %s", s.Pos, s.Key, strings.Join(confKeys(fs), ", "))
		}
		if p, dup := seen[name]; dup {
			return fmt.Errorf("%s: %s is set twice (first at %s)", s.Pos, s.Key, p)
		}
		seen[name] = s.Pos
		if s.Append {
			return fmt.Errorf("%s: %s: += is for domain files; write %s = ...", s.Pos, s.Key, s.Key)
		}
		if explicit[name] {
			continue
		}
		vals, err := confValues(s.Value)
		if err != nil {
			return fmt.Errorf("%s: %s: %v", s.Pos, s.Key, err)
		}
		for _, v := range vals {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("%s: %s = %q: %v; it is: %s", s.Value.Pos, s.Key, v, err, f.Usage)
			}
		}
	}
	return nil
}

// confValues are the flag values a setting stands for: one, or one per
// list item (repeatable flags such as disk_roots).
func confValues(v config.Value) ([]string, error) {
	switch v.Kind {
	case config.String:
		return []string{v.Str}, nil
	case config.Number:
		if v.Str != "" {
			return []string{v.Str}, nil
		}
		return []string{strconv.FormatInt(v.Num, 10)}, nil
	case config.List:
		var out []string
		for _, it := range v.Items {
			if it.Kind == config.List {
				return nil, errors.New("lists do not nest here")
			}
			s, err := confValues(it)
			if err != nil {
				return nil, err
			}
			out = append(out, s...)
		}
		return out, nil
	}
	return nil, errors.New("unsupported value")
}

func confKeys(fs *flag.FlagSet) []string {
	var out []string
	fs.VisitAll(func(f *flag.Flag) {
		if !notInConf[f.Name] {
			out = append(out, strings.ReplaceAll(f.Name, "-", "_"))
		}
	})
	sort.Strings(out)
	return out
}
