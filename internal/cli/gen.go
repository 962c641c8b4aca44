package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// The man page and the bash completion are generated from the verb table
// (`ringfence __gen man|completion`, run by `make deb`), so they cannot
// drift from the commands.
const genVerb = "__gen"

func runGen(w io.Writer, what string) error {
	switch what {
	case "man":
		genMan(w)
	case "completion":
		genCompletion(w)
	default:
		return fmt.Errorf("%s: man or completion", genVerb)
	}
	return nil
}

func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

func genMan(w io.Writer) {
	vs := append([]verb(nil), verbs...)
	sort.Slice(vs, func(i, j int) bool { return vs[i].name < vs[j].name })
	fmt.Fprintf(w, ".TH RINGFENCE 8 \"\" \"ringfence\" \"System Administration\"\n")
	fmt.Fprintf(w, ".SH NAME\nringfence \\- guaranteed\\-resource virtual machines on KVM/QEMU, driven by Xen domain files\n")
	fmt.Fprintf(w, ".SH SYNOPSIS\n.B ringfence\n[\\-\\-socket PATH] COMMAND [ARGS]\n")
	fmt.Fprintf(w, ".SH DESCRIPTION\nA domain per customer with guaranteed, never oversold resources, managed from xl.cfg(5) domain files "+
		"and an xl(1)\\-like command set. \\fBringfence serve\\fR is the host daemon (ringfence.service); every other command is its client "+
		"over /run/ringfence/ringfence.sock (root only).\n")
	fmt.Fprintf(w, ".SH COMMANDS\n")
	for _, v := range vs {
		fmt.Fprintf(w, ".TP\n.B %s\n%s.\n.br\n%s\n", roff(v.name), roff(v.summary), roff("ringfence "+v.usage))
	}
	fmt.Fprintf(w, ".SH FILES\n.TP\n/etc/ringfence/ringfence.conf\nthe daemon's settings, in domain\\-file syntax: each key is a \\fBserve\\fR flag with _ for \\- "+
		"(state_dir, listen, reserve_mem, vcpu_ratio, log_level, ...); flags given to \\fBserve\\fR win.\n"+
		".TP\n/etc/ringfence/auto/\ndomain files defined and started at host boot (xl's /etc/xen/auto).\n"+
		".TP\n/etc/default/ringfence\\-guests\nwhat ringfence\\-guests.service does with guests at host shutdown (shut down, or save and restore at boot).\n"+
		".TP\n/var/lib/ringfence\nthe store (state.db, backups/), images, pools.\n"+
		".TP\n/var/log/ringfence/NAME/\neach domain's console.log and qemu.log, kept after it is gone.\n")
	fmt.Fprintf(w, ".SH SEE ALSO\nxl.cfg(5), xl(1), qemu(1), systemctl(1)\n")
}

func genCompletion(w io.Writer) {
	var names []string
	for _, v := range verbs {
		names = append(names, v.name)
	}
	sort.Strings(names)
	fmt.Fprintf(w, `# bash completion for ringfence (generated from its command table)
_ringfence() {
    local cur=${COMP_WORDS[COMP_CWORD]} i=1
    while [ $i -lt $COMP_CWORD ] && [[ ${COMP_WORDS[i]} == -* ]]; do
        [ "${COMP_WORDS[i]}" = --socket ] && i=$((i+1))
        i=$((i+1))
    done
    if [ $COMP_CWORD -eq $i ]; then
        COMPREPLY=($(compgen -W "%s" -- "$cur"))
        return
    fi
    case ${COMP_WORDS[i]} in
    create|define|restore|import) COMPREPLY=($(compgen -f -- "$cur")) ;;
    *) COMPREPLY=($(compgen -W "$(ringfence list --all 2>/dev/null | awk 'NR>1 {print $1}' | sort -u)" -- "$cur")) ;;
    esac
}
complete -F _ringfence ringfence
`, strings.Join(names, " "))
}
