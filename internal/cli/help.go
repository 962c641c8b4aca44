package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
)

// Exit codes, documented in ringfence(8) and the README.
const (
	exitOK       = 0
	exitFailed   = 1 // any other failure
	exitUsage    = 2 // the command line is wrong
	exitNotFound = 3 // no such domain, pool, volume, operation...
	exitRefused  = 4 // refused: admission (resources), permission, quota
)

// exitCode maps a verb's error to the exit code: the API's error classes
// (internal/api/errors.go) survive the socket, so a script can tell a
// missing domain from a refusal without reading the message.
func exitCode(err error) int {
	var ue usageError
	var ee exitError
	var hr helpRequest
	switch {
	case err == nil, errors.As(err, &hr):
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, api.ErrNotFound):
		return exitNotFound
	case errors.Is(err, api.ErrInsufficient), errors.Is(err, api.ErrForbidden), errors.Is(err, api.ErrUnauthorized):
		return exitRefused
	}
	return exitFailed
}

// exitCodes is the table ringfence(8) and `ringfence help` print.
var exitCodes = []struct {
	code int
	what string
}{
	{exitOK, "success"},
	{exitFailed, "failure (the message says what and how to fix it)"},
	{exitUsage, "usage: the command line is wrong (unknown verb or flag, missing argument)"},
	{exitNotFound, "not found: no such domain, definition, pool, volume, network, snapshot or operation"},
	{exitRefused, "refused: admission (not enough memory or CPUs), permission (the token's role), quota"},
}

// wantsHelp: -h, -help or --help anywhere before "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// runHelp is `ringfence help [VERB]`.
func runHelp(e *env, args []string) error {
	pos, err := parse(flag.NewFlagSet("help", flag.ContinueOnError), args, 0, 1)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		printOverview(e.stdout)
		return nil
	}
	v, ok := lookupVerb(pos[0])
	if !ok {
		return usageError{fmt.Sprintf("no command %q (ringfence help lists them)", pos[0])}
	}
	return printVerbHelp(e, v)
}

// printOverview is `ringfence help`: the commands by group.
func printOverview(w io.Writer) {
	fmt.Fprintln(w, "ringfence: guaranteed-resource virtual machines on KVM/QEMU, driven by Xen")
	fmt.Fprintln(w, "domain files, with xl's commands")
	fmt.Fprintln(w, "\nusage: ringfence [--socket PATH | --remote NAME] COMMAND [ARGS]")
	fmt.Fprintln(w, "       ringfence COMMAND --help | ringfence help COMMAND | ringfence --version")
	width := 0
	for _, v := range verbs {
		width = max(width, len(v.name))
	}
	for _, g := range groups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, v := range verbs {
			if v.group != g.name {
				continue
			}
			lines := wrapWords(v.summary, 80-2-width-2)
			fmt.Fprintf(w, "  %-*s  %s\n", width, v.name, lines[0])
			for _, l := range lines[1:] {
				fmt.Fprintf(w, "  %-*s  %s\n", width, "", l)
			}
		}
	}
	fmt.Fprintln(w, "\nexit status:")
	for _, c := range exitCodes {
		for i, l := range wrapWords(c.what, 80-5) {
			if i == 0 {
				fmt.Fprintf(w, "  %d  %s\n", c.code, l)
			} else {
				fmt.Fprintf(w, "     %s\n", l)
			}
		}
	}
}

// printVerbHelp is `ringfence VERB --help`: synopsis, what it does,
// every flag with its description and default, and an example.
func printVerbHelp(e *env, v verb) error {
	w := e.stdout
	printSynopses(w, v)
	fmt.Fprintln(w)
	for _, l := range wrapWords(v.summary, 78) {
		fmt.Fprintln(w, l)
	}
	for _, sec := range flagSections(e, v) {
		fmt.Fprintf(w, "\n%s:\n", sec.title)
		for _, l := range sec.lines(80) {
			fmt.Fprintln(w, l)
		}
	}
	fmt.Fprintf(w, "\nexample:\n  ringfence %s\n", v.example)
	return nil
}

// printSynopses writes a verb's usage lines, each folded to 80 columns
// between bracketed groups, the continuation under the first argument.
func printSynopses(w io.Writer, v verb) {
	for i, alt := range synopses(v) {
		lead := "usage: "
		if i > 0 {
			lead = "   or: "
		}
		words := synopsisWords(alt)
		head := lead + "ringfence " + words[0]
		if len(words) == 1 {
			fmt.Fprintln(w, head)
			continue
		}
		indent := strings.Repeat(" ", len(head)+1)
		for j, l := range wrapWords(strings.Join(words[1:], " "), 80-len(indent)) {
			l = strings.ReplaceAll(l, "\x00", " ")
			if j == 0 {
				fmt.Fprintf(w, "%s %s\n", head, l)
			} else {
				fmt.Fprintf(w, "%s%s\n", indent, l)
			}
		}
	}
}

// synopsisWords splits a synopsis at spaces outside brackets, the words
// inside a group joined by NULs so the group folds as one word.
func synopsisWords(s string) []string {
	var out []string
	depth, cur := 0, ""
	for _, r := range s {
		switch {
		case r == '[':
			depth++
		case r == ']':
			depth--
		case r == ' ' && depth == 0:
			if cur != "" {
				out = append(out, cur)
			}
			cur = ""
			continue
		case r == ' ':
			r = 0
		}
		cur += string(r)
	}
	return append(out, cur)
}

// synopses are the alternatives of a verb's usage, one per line: split
// at the " | " outside brackets (one inside, as [--tenant T | --shared],
// is a choice of flags within one synopsis).
func synopses(v verb) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(v.usage); i++ {
		switch v.usage[i] {
		case '[':
			depth++
		case ']':
			depth--
		case '|':
			if depth == 0 && strings.HasPrefix(v.usage[i-1:], " | ") {
				out = append(out, v.usage[start:i-1])
				start = i + 2
			}
		}
	}
	return append(out, v.usage[start:])
}

// flagSets are the flag sets a verb parses (one per subcommand): the
// verb is run with --help, which its parse answers with its FlagSet
// before anything else happens.
func flagSets(e *env, v verb) (subs []string, sets []*flag.FlagSet) {
	if v.hostFlags != nil {
		return nil, v.hostFlags(e.host)
	}
	calls := [][]string{{"--help"}}
	if v.subs != nil {
		calls = nil
		for _, s := range v.subs {
			calls = append(calls, []string{s, "--help"})
		}
	}
	for i, args := range calls {
		var hr helpRequest
		if err := v.run(e, args); errors.As(err, &hr) {
			if v.subs != nil {
				subs = append(subs, v.subs[i])
			}
			sets = append(sets, hr.fs)
		}
	}
	return subs, sets
}

// flagSection is the flags of a verb, or of some of its subcommands.
type flagSection struct {
	title string
	flags []flagDoc
}

// flagDoc is one flag as help shows it: its names (an alias such as -n
// for --dry-run shares a line), value placeholder, description, default.
type flagDoc struct {
	names       []string
	value       string
	usage, dflt string
}

// flagSections groups a verb's flags: one section, or one per run of
// subcommands that share the same flags.
func flagSections(e *env, v verb) []flagSection {
	subs, sets := flagSets(e, v)
	var out []flagSection
	prevKey := ""
	for i, fs := range sets {
		docs := flagDocs(fs)
		if len(docs) == 0 {
			continue
		}
		key := fmt.Sprint(docs)
		title := "flags"
		if subs != nil {
			title = "flags of " + v.name + " " + subs[i]
		}
		if key == prevKey && len(out) > 0 {
			out[len(out)-1].title += ", " + subs[i]
			continue
		}
		prevKey = key
		out = append(out, flagSection{title: title, flags: docs})
	}
	return out
}

// flagDocs reads a FlagSet, merging aliases ("same as --x") into the
// flag they name.
func flagDocs(fs *flag.FlagSet) []flagDoc {
	var docs []flagDoc
	index := map[string]int{}
	var aliases []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Usage, "same as -") {
			aliases = append(aliases, f)
			return
		}
		// The value's placeholder comes from its type alone: usages quote
		// commands in backquotes, which UnquoteUsage would take for it.
		value, _ := flag.UnquoteUsage(&flag.Flag{Value: f.Value})
		usage := f.Usage
		if value == "value" {
			value = "VALUE"
		}
		index[f.Name] = len(docs)
		docs = append(docs, flagDoc{names: []string{dashed(f.Name)}, value: strings.ToUpper(value), usage: usage, dflt: defaultOf(f)})
	})
	for _, a := range aliases {
		target := strings.TrimLeft(strings.TrimPrefix(a.Usage, "same as "), "-")
		if i, ok := index[target]; ok {
			docs[i].names = append(docs[i].names, dashed(a.Name))
		} else {
			docs = append(docs, flagDoc{names: []string{dashed(a.Name)}, usage: a.Usage})
		}
	}
	sort.SliceStable(docs, func(i, j int) bool {
		return strings.TrimLeft(docs[i].names[0], "-") < strings.TrimLeft(docs[j].names[0], "-")
	})
	return docs
}

// dashed writes a flag as people type it: -p, --dry-run (Go's flag
// package takes either number of dashes).
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// defaultOf is a flag's default when it says something (not false, 0 or
// empty).
func defaultOf(f *flag.Flag) string {
	switch f.DefValue {
	case "", "false", "0", "0s", "[]":
		return ""
	}
	return f.DefValue
}

// head is the flag's left column: -n, --dry-run VALUE.
func (d flagDoc) head() string {
	h := strings.Join(d.names, ", ")
	if d.value != "" {
		h += " " + d.value
	}
	return h
}

// text is the description with the default.
func (d flagDoc) text() string {
	if d.dflt != "" {
		return d.usage + " (default " + d.dflt + ")"
	}
	return d.usage
}

// lines renders the section within width columns.
func (s flagSection) lines(width int) []string {
	col := 0
	for _, d := range s.flags {
		col = max(col, len(d.head()))
	}
	col = min(col, 24)
	var out []string
	for _, d := range s.flags {
		text := wrapWords(d.text(), width-2-col-2)
		if len(d.head()) > col {
			out = append(out, "  "+d.head())
			for _, l := range text {
				out = append(out, "  "+strings.Repeat(" ", col+2)+l)
			}
			continue
		}
		out = append(out, fmt.Sprintf("  %-*s  %s", col, d.head(), text[0]))
		for _, l := range text[1:] {
			out = append(out, "  "+strings.Repeat(" ", col+2)+l)
		}
	}
	return out
}
