package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/spec"
)

// Warning is a non-fatal diagnostic. Key is the setting it is about, when
// there is one.
type Warning struct {
	Pos Pos
	Msg string
	Key string
}

func (w Warning) String() string { return w.Pos.String() + ": warning: " + w.Msg }

// Options change how a file is read.
type Options struct {
	// Strict refuses, besides what Ringfence refuses, everything xl's
	// own parser refuses (a final comment with no newline, an unquoted
	// negative number, access w!...): a file that passes is read the same
	// by xl on a Xen host.
	Strict bool
}

// decoder carries the spec being built and the diagnostics so far.
type decoder struct {
	spec     api.DomainSpec
	warnings []Warning
	errs     Errors
	file     string
	o        Options
	// pos is where each key was set (its value, the last assignment);
	// items the positions of a list key's items (disk, vif).
	pos   map[string]Pos
	items map[string][]Pos
	// given are the keys the file sets; failed those with an error.
	given, failed map[string]bool
	vnc           vncNotes
	root          string
	extra         string
	// cmdline and hasCmd: cmdline= wins over root= and extra=.
	cmdline string
	hasCmd  bool
	// pvgrub: kernel= named Xen's PV GRUB (see decodeKernel).
	pvgrub string
}

func (d *decoder) warn(p Pos, key, format string, a ...any) {
	d.warnings = append(d.warnings, Warning{Pos: p, Key: key, Msg: fmt.Sprintf(format, a...)})
}

func (d *decoder) errorf(p Pos, format string, a ...any) {
	d.errs = append(d.errs, &Error{Pos: p, Msg: fmt.Sprintf(format, a...)})
}

// note takes what a spec parser says about an item it accepted: a
// warning, or under Strict an error when xl would refuse the item.
func (d *decoder) note(p Pos, key string, n spec.Note) {
	if n.NotXL && d.o.Strict {
		d.errorf(p, "%s", n.Msg)
		return
	}
	d.warn(p, key, "%s", n.Msg)
}

// Load reads and decodes a domain file.
func Load(path string) (api.DomainSpec, []Warning, error) { return LoadWith(path, Options{}) }

// LoadWith reads and decodes a domain file with options. It reads at most
// MaxFileSize (+1, to know it is over): `create /dev/zero` is refused,
// not read until memory runs out. It then looks at the first disk's boot
// sector when the domain boots from it (see bootSectorWarning).
func LoadWith(path string, o Options) (api.DomainSpec, []Warning, error) {
	src, err := ReadFile(path)
	if err != nil {
		return api.DomainSpec{}, nil, err
	}
	s, warns, err := DecodeWith(path, src, o)
	if err == nil {
		if w := bootSectorWarning(path, s); w != nil {
			warns = append(warns, *w)
		}
	}
	return s, warns, err
}

// ReadFile reads a file of settings (a domain file, the host's settings)
// up to the size a domain file may have.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return src, nil
}

// Decode parses src and turns it into a validated spec with defaults
// applied (xl's, see spec.Normalize).
func Decode(file string, src []byte) (api.DomainSpec, []Warning, error) {
	return DecodeWith(file, src, Options{})
}

// DecodeWith is Decode with options. The error is Errors: every error in
// the file, in line order. With errors, the spec returned is what could
// be read (for diagnostics only: it is not valid).
func DecodeWith(file string, src []byte, o Options) (api.DomainSpec, []Warning, error) {
	d := &decoder{file: file, o: o, pos: map[string]Pos{}, items: map[string][]Pos{}, given: map[string]bool{}, failed: map[string]bool{}}
	p := parse(file, src)
	if p.notText {
		return api.DomainSpec{}, nil, p.errs
	}
	d.errs = append(d.errs, p.errs...)
	for k := range p.broken {
		d.failed[k] = true
	}
	for _, w := range p.xlOnly {
		if o.Strict {
			d.errorf(w.Pos, "%s", w.Msg)
		} else {
			d.warnings = append(d.warnings, w)
		}
	}
	for _, s := range d.merge(p.settings) {
		d.apply(s)
	}
	d.finish()
	sort.SliceStable(d.warnings, func(i, j int) bool { return d.warnings[i].Pos.before(d.warnings[j].Pos) })
	return d.spec, d.warnings, d.errs.sorted()
}

// merge applies xl's rules for repeated keys: the last assignment wins
// (said, since the earlier one's meaning is dropped) and += appends to an
// earlier string or list. Each key keeps the position of its last plain
// assignment.
func (d *decoder) merge(in []Setting) []Setting {
	idx := map[string]int{}
	var out []Setting
	for _, s := range in {
		i, seen := idx[s.Key]
		if !seen {
			idx[s.Key] = len(out)
			s.Append = false
			out = append(out, s)
			continue
		}
		if !s.Append {
			d.warn(s.Pos, s.Key, "%s is set again (first at line %d): the last setting wins, as in xl", s.Key, out[i].Pos.Line)
			out[i] = s
			continue
		}
		prev := out[i].Value
		switch {
		case prev.Kind == List && s.Value.Kind == List:
			prev.Items = append(append([]Value(nil), prev.Items...), s.Value.Items...)
		case prev.Kind == String && s.Value.Kind == String:
			prev.Str += s.Value.Str
		default:
			d.errorf(s.Pos, "%s += : += appends a list to a list or a string to a string", s.Key)
			continue
		}
		out[i].Value = prev
	}
	return out
}

// apply decodes one setting by the key table; a key it does not know is
// said to be ignored, with why.
func (d *decoder) apply(s Setting) {
	if s.Value.Kind == Number && s.Value.Octal {
		d.warn(s.Value.Pos, s.Key, "%s = %s: a leading 0 makes it octal in xl (%d); drop the 0 if you meant %s", s.Key, s.Value.Str, s.Value.Num, strings.TrimLeft(s.Value.Str, "0"))
	}
	rule, ok := keys[s.Key]
	if !ok {
		d.ignore(s)
		return
	}
	d.pos[s.Key] = s.Value.Pos
	d.given[s.Key] = true
	n := len(d.errs)
	if err := rule.apply(d, s.Value); err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			d.errs = append(d.errs, pe)
		} else {
			d.errorf(s.Value.Pos, "%s: %v", s.Key, err)
		}
	}
	if len(d.errs) > n {
		d.failed[s.Key] = true // its errors are said; later checks do not blame it again
	}
}

// ignore warns about a key with no effect here: one xl knows (why it
// does nothing on KVM, unless its value is what happens anyway) or one
// nobody knows.
func (d *decoder) ignore(s Setting) {
	if h, ok := honoured[s.Key]; ok && h(s.Value) {
		return
	}
	if why, known := ignored[s.Key]; known {
		d.warn(s.Pos, s.Key, "%q is ignored: %s", s.Key, why)
		return
	}
	hint := ""
	if alt, ok := misspelt[s.Key]; ok {
		hint = " (" + alt + ")"
	}
	d.warn(s.Pos, s.Key, "unknown key %q: ignored, as xl ignores it%s", s.Key, hint)
}

// finish applies what needs every key read: the boot files, the command
// line, then spec.Normalize (xl's defaults and every cross-field rule).
func (d *decoder) finish() {
	if d.pvgrub != "" {
		d.dropPVGrubMenu()
	}
	if !d.hasCmd {
		var parts []string
		if d.root != "" {
			parts = append(parts, "root="+d.root)
		}
		if d.extra != "" {
			parts = append(parts, d.extra)
		}
		d.cmdline = strings.Join(parts, " ")
	}
	for i := range d.spec.Disks {
		d.spec.Disks[i].Guest = spec.GuestDisk(i)
	}
	d.spec.Cmdline = d.mapCmdline(d.cmdline)
	d.finishVNC()
	d.finishProvision()
	switch {
	case d.failed["name"]:
		d.probe() // the name's error is said; check the rest
	case d.spec.Name == "":
		d.errorf(Pos{File: d.file, Line: 1, Col: 1}, "name is required: add a line like `name = \"web01\"` (if this file is a fragment appended to another, check the two together: cat machine.cfg %s > domain.cfg)", d.file)
		d.probe()
	default:
		d.normalize(&d.spec)
		d.bootloaderWarning()
	}
}

// normalize runs spec.Normalize on s and reports its error at the line
// of the later of the settings it is about.
func (d *decoder) normalize(s *api.DomainSpec) {
	err := spec.Normalize(s)
	if err == nil {
		return
	}
	at := Pos{File: d.file}
	var p *spec.Problem
	if errors.As(err, &p) {
		for _, k := range p.Keys {
			if d.failed[k] {
				return // about a setting whose own error is said already
			}
		}
		at = d.latest(p)
	}
	if at.Line == 0 && len(d.errs) > 0 {
		return // about the file as a whole, most likely what its errors left out
	}
	d.errorf(at, "%v", err)
}

// latest is where the later of p's settings is: a disk or vif item's own
// position, else the last set of its keys; the file when none is set.
func (d *decoder) latest(p *spec.Problem) Pos {
	var at Pos
	found := false
	for _, k := range p.Keys {
		ps, set := d.pos[k]
		if items := d.items[k]; p.Item >= 0 && p.Item < len(items) {
			ps, set = items[p.Item], true
		}
		if set && (!found || at.before(ps)) {
			at, found = ps, true
		}
	}
	if !found {
		at = Pos{File: d.file}
	}
	return at
}

// probe checks a spec that has no (valid) name with the rules of a
// whole one: a fragment appended to a machine file by its users (as
// xen-troops keep a domain's devices), or a file whose name is refused.
// What the machine file would give is xl's default: type pv and a kernel.
func (d *decoder) probe() {
	probe := d.spec
	probe.Name = "fragment"
	placeholder := probe.Type == "" && probe.Kernel == "" && probe.Bootloader == ""
	if placeholder {
		probe.Type, probe.Kernel = "pv", "/fragment"
	}
	d.normalize(&probe)
	probe.Name = ""
	if placeholder {
		probe.Kernel = ""
	}
	d.spec = probe
}
