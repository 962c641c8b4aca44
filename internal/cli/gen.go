package cli

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
)

// The man pages and the shell completions are generated from the verb
// table (`ringfence gen man DIR`, `ringfence gen completion SHELL`, run
// by `make deb`), so they cannot drift from the commands.

func runGen(e *env, args []string) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	switch pos[0] {
	case "man":
		return writeManPages(e, pos[1])
	case "completion":
		gen, ok := completions[pos[1]]
		if !ok {
			return usageError{fmt.Sprintf("no completion for %q: bash, zsh or fish", pos[1])}
		}
		return gen(e, e.stdout)
	}
	return usageError{"gen man DIR | gen completion bash|zsh|fish"}
}

// manPages are the pages by file name: ringfence.8, one ringfence-VERB.8
// per verb, ringfence.conf.5.
func manPages(e *env) map[string][]byte {
	pages := map[string][]byte{}
	var b bytes.Buffer
	manMain(&b)
	pages["ringfence.8"] = append([]byte(nil), b.Bytes()...)
	for _, v := range verbs {
		b.Reset()
		manVerb(e, &b, v)
		pages["ringfence-"+v.name+".8"] = append([]byte(nil), b.Bytes()...)
	}
	b.Reset()
	manConf(e, &b)
	pages["ringfence.conf.5"] = append([]byte(nil), b.Bytes()...)
	return pages
}

// writeManPages writes the pages into dir/man8 and dir/man5.
func writeManPages(e *env, dir string) error {
	for name, page := range manPages(e) {
		sec := "man" + name[len(name)-1:]
		if err := os.MkdirAll(filepath.Join(dir, sec), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, sec, name), page, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// roff escapes text for a man page line.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

const manDate = "ringfence " + api.Release

func manHeader(w io.Writer, title string, sec int, what string) {
	fmt.Fprintf(w, ".TH %s %d \"\" %q %q\n", strings.ToUpper(title), sec, manDate, what)
}

func manMain(w io.Writer) {
	manHeader(w, "ringfence", 8, "System Administration")
	fmt.Fprintf(w, ".SH NAME\nringfence \\- guaranteed\\-resource virtual machines on KVM/QEMU, driven by Xen domain files\n")
	fmt.Fprintf(w, ".SH SYNOPSIS\n.B ringfence\n[\\-\\-socket PATH | \\-\\-remote NAME] COMMAND [ARGS]\n.br\n.B ringfence\nCOMMAND \\-\\-help | help COMMAND | \\-\\-version\n")
	fmt.Fprintf(w, ".SH DESCRIPTION\nA domain per customer with guaranteed, never oversold resources, managed from xl.cfg(5) domain files "+
		"and an xl(1)\\-like command set. \\fBringfence serve\\fR is the host daemon (ringfence.service); every other command is its client "+
		"over /run/ringfence/ringfence.sock (root only), or over HTTPS with an API token (\\fBringfence remote\\fR).\n")
	for _, g := range groups {
		fmt.Fprintf(w, ".SH %s\n", roff(strings.ToUpper(g.title)))
		for _, v := range verbs {
			if v.group == g.name {
				fmt.Fprintf(w, ".TP\n.BR %s \" (see ringfence\\-%s(8))\"\n%s.\n", roff(v.name), roff(v.name), roff(v.summary))
			}
		}
	}
	fmt.Fprintf(w, ".SH OPTIONS\n.TP\n\\-\\-socket PATH\nthe daemon's unix socket (default /run/ringfence/ringfence.sock; also RINGFENCE_SOCKET).\n"+
		".TP\n\\-\\-remote NAME\na daemon added with \\fBringfence remote add\\fR (also RINGFENCE_REMOTE).\n"+
		".TP\n\\-\\-help, \\-h\nthe commands by group; after a command, its synopsis, flags and an example.\n"+
		".TP\n\\-\\-version\nprint the version.\n")
	manExit(w)
	fmt.Fprintf(w, ".SH FILES\n.TP\n/etc/ringfence/ringfence.conf\nthe daemon's settings (ringfence.conf(5)).\n"+
		".TP\n/etc/ringfence/auto/\ndomain files defined and started at host boot (xl's /etc/xen/auto).\n"+
		".TP\n/etc/default/ringfence\\-guests\nwhat ringfence\\-guests.service does with guests at host shutdown (shut down, or save and restore at boot).\n"+
		".TP\n/var/lib/ringfence\nthe store (state.db, backups/), images, pools.\n"+
		".TP\n/var/log/ringfence/NAME/\neach domain's console.log and qemu.log, kept after it is gone.\n")
	fmt.Fprintf(w, ".SH SEE ALSO\nringfence.conf(5), xl.cfg(5), xl(1), qemu(1), systemctl(1)\n")
}

// manExit is the EXIT STATUS section (every page has it).
func manExit(w io.Writer) {
	fmt.Fprintf(w, ".SH EXIT STATUS\n")
	for _, c := range exitCodes {
		fmt.Fprintf(w, ".TP\n.B %d\n%s.\n", c.code, roff(c.what))
	}
}

func manVerb(e *env, w io.Writer, v verb) {
	manHeader(w, "ringfence-"+v.name, 8, "System Administration")
	fmt.Fprintf(w, ".SH NAME\nringfence\\-%s \\- %s\n.SH SYNOPSIS\n", roff(v.name), roff(v.summary))
	for i, alt := range synopses(v) {
		if i > 0 {
			fmt.Fprintln(w, ".br")
		}
		fmt.Fprintf(w, ".B ringfence\n%s\n", roff(alt))
	}
	fmt.Fprintf(w, ".SH DESCRIPTION\n%s.\n", roff(v.summary))
	for _, sec := range flagSections(e, v) {
		fmt.Fprintf(w, ".SH %s\n", roff(strings.ToUpper(sec.title)))
		for _, d := range sec.flags {
			fmt.Fprintf(w, ".TP\n.B %s\n%s\n", roff(d.head()), roff(d.text()))
		}
	}
	fmt.Fprintf(w, ".SH EXAMPLE\n.nf\nringfence %s\n.fi\n", roff(v.example))
	manExit(w)
	fmt.Fprintf(w, ".SH SEE ALSO\nringfence(8)\n")
}

// manConf is ringfence.conf(5): every key is a serve flag with _ for -.
func manConf(e *env, w io.Writer) {
	manHeader(w, "ringfence.conf", 5, "File Formats")
	fmt.Fprintf(w, ".SH NAME\nringfence.conf \\- the Ringfence host daemon's settings\n")
	fmt.Fprintf(w, ".SH DESCRIPTION\n/etc/ringfence/ringfence.conf holds the settings of \\fBringfence serve\\fR in the syntax of a domain file "+
		"(xl.cfg(5)): \\fIkey\\fR = \\fIvalue\\fR, strings quoted, lists in [ ]. Each key is a \\fBserve\\fR flag with _ for \\-; "+
		"flags given on the command line win. A key that is not listed here is an error.\n.SH KEYS\n")
	if e.host.ServeFlags != nil {
		for _, d := range flagDocs(e.host.ServeFlags()) {
			name := strings.ReplaceAll(strings.TrimLeft(d.names[0], "-"), "-", "_")
			if name == "config" {
				continue
			}
			fmt.Fprintf(w, ".TP\n.B %s\n%s\n", roff(name), roff(d.text()))
		}
	}
	fmt.Fprintf(w, ".SH EXAMPLE\n.nf\nreserve_mem = 2048\nvcpu_ratio = 1\ndisk_roots = [ \"/srv/vm\", \"/var/lib/ringfence/pools\" ]\n.fi\n")
	fmt.Fprintf(w, ".SH SEE ALSO\nringfence(8), ringfence\\-serve(8), xl.cfg(5)\n")
}
