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
	"sort"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
	"github.com/ringfence/ringfence/internal/cmdline"
)

// verb is one row of the command table.
type verb struct {
	name    string
	summary string
	usage   string
	run     func(e *env, args []string) error
}

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

// localVerbs never reach a daemon through a remote: they run on this host
// or edit the client's own config.
var localVerbs = map[string]bool{"serve": true, "store": true, "remote": true, "version": true, "image": true}

var verbs []verb

func init() {
	verbs = []verb{
		{"serve", "run the host daemon", "serve [--config FILE] [--state-dir DIR] [--run-dir DIR] [--accel kvm|tcg] ...", hostVerb(func(e *env, args []string) int {
			socket := ""
			if e.socketGiven {
				socket = e.socket
			}
			return e.host.Serve(args, socket, e.stderr)
		})},
		{"create", "create a domain from a domain file", "create FILE [-p] [-c] [--dry-run] [--tenant T] [--json] [--async]", runCreate},
		{"list", "list domains (--all: the defined stopped ones too, with why they stopped)", "list [--all] [--json] [NAME...]", runList},
		{"console", "attach to a domain's serial console (Ctrl-] detaches)", "console NAME", runConsole},
		{"define", "store a domain without starting it (kept across stops and host reboots)", "define FILE [--json]", runDefine},
		{"undefine", "remove a domain's definition (a running one runs on, transient)", "undefine NAME", runUndefine},
		{"autostart", "start a defined domain at host boot, in order", "autostart NAME on|off [--order N] [--delay SEC]", runAutostart},
		{"log", "a domain's console (or QEMU) log, kept after it is gone", "log NAME [--qemu] [--tail BYTES]", runLog},
		{"dmesg", "the daemon's recent log", "dmesg", runDmesg},
		{"store", "check the daemon's store, or restore a backup (the daemon stopped)", "store check [--state-dir D] [--json] | store restore [--state-dir D] [BACKUP]", hostVerb(func(e *env, args []string) int {
			return e.host.Store(args, e.stdout, e.stderr)
		})},
		{"stop", "shut a domain down (the ACPI power button; = shutdown)", "stop NAME [-w [--async]] [--force] [--timeout SEC]", runShutdown},
		{"start", "start a stopped domain again (kept after a shutdown or crash, or stopped by the crash-loop brake)", "start NAME [-p]", runStart},
		{"shutdown", "press the ACPI power button (--all: every guest, as at host shutdown)", "shutdown NAME|--all [-w [--async]] [--force] [--timeout SEC] [--save DIR]", runShutdown},
		{"reboot", "restart a domain: the ACPI power button, then on_reboot (xl, virsh)", "reboot NAME|--all [-w] [--force] [--timeout SEC]", runReboot},
		{"reset", "hard-reset a domain (it then follows on_reboot)", "reset NAME", actionVerb("reset")},
		{"destroy", "terminate a domain immediately", "destroy NAME", actionVerb("destroy")},
		{"pause", "pause a domain's vCPUs", "pause NAME", actionVerb("pause")},
		{"unpause", "resume a paused domain", "unpause NAME", actionVerb("unpause")},
		{"info", "host facts: CPUs, memory, accelerator, QEMU, cgroups, ledger; with NAME, one domain's (why it last stopped)", "info [NAME] [--json]", runInfo},
		{"uptime", "domain uptimes", "uptime [--json] [NAME...]", runUptime},
		{"migrate", "live-migrate a domain to another host", "migrate NAME HOST:PORT [--max-downtime MS] [--with-storage [--storage-dir DIR]] [--plain-stream] [--json] [--async] | migrate --cancel NAME", runMigrate},
		{"host", "this host's trust among its peers: the authority, join tokens, the peer list", "host trust [--peer-name N] [--name HOST]... [--offline | --ca-from DIR] | host token [--peer-name N] [--ttl 10m] | host join TOKEN [--peer-name N] [--name HOST]... | host peers [--json] | host revoke NAME | host renew", runHost},
		{"save", "save a domain's state to a file (it is gone afterwards; -c keeps it running)", "save [-c] [--async] NAME FILE", runSave},
		{"restore", "start a domain from a save file", "restore [-p] [--async] FILE", runRestore},
		{"audit", "who changed what: the daemon's record of every mutating call", "audit [--since SEQ] [--limit N] [--json]", runAudit},
		{"top", "live per-domain CPU, memory, steal, network and disk figures (xentop)", "top [-b] [-i N] [-d SECS] [--sort name|cpu|mem|steal|net|vbd] [--json]", runTop},
		{"mem-set", "set a domain's memory (balloon), within maxmem", "mem-set NAME MEM (b/k/m/g suffix; KiB without, as xl)", memVerb("mem-set")},
		{"mem-max", "lower the ceiling mem-set may reach", "mem-max NAME MEM", memVerb("mem-max")},
		{"sched-credit", "show or set CPU weight and cap", "sched-credit [-d NAME] [-w WEIGHT] [-c CAP]", runSchedCredit},
		{"vcpu-pin", "pin vCPUs to host CPUs", "vcpu-pin NAME VCPU|all CPUS", runVCPUPin},
		{"config", "check, show or export domain files; update or edit a definition", "config check FILE... | config show FILE [--json] | config export NAME | config update NAME FILE | config edit NAME", runConfig},
		{"block-attach", "add a disk to a running domain (xl disk spec)", "block-attach NAME DISKSPEC", blockVerb("block-attach", 2, func(p []string) api.BlockRequest { return api.BlockRequest{Spec: p[1]} })},
		{"block-detach", "remove a disk attached while the domain runs", "block-detach NAME VDEV", blockVerb("block-detach", 2, func(p []string) api.BlockRequest { return api.BlockRequest{VDev: p[1]} })},
		{"block-list", "a domain's disks, and what its VM has in them", "block-list NAME [--json]", runBlockList},
		{"cd-insert", "put a medium in a CD-ROM drive", "cd-insert NAME VDEV FILE", blockVerb("cd-insert", 3, func(p []string) api.BlockRequest { return api.BlockRequest{VDev: p[1], Path: absPath(p[2])} })},
		{"cd-eject", "empty a CD-ROM drive", "cd-eject NAME VDEV", blockVerb("cd-eject", 2, func(p []string) api.BlockRequest { return api.BlockRequest{VDev: p[1]} })},
		{"clone", "a new domain from a running or stopped one: thin-cloned disks, new MACs", "clone SRC NEW [-p] [--vif SPEC]... [--set KEY=VALUE]... [--tenant T] [--json] [--async]", runClone},
		{"snapshot", "named snapshots of a domain's qcow2 disks (and memory)", "snapshot create NAME SNAP [--memory] [--async] | snapshot list NAME [--json] | snapshot revert NAME SNAP [--async] | snapshot delete NAME SNAP", runSnapshot},
		{"operation", "the daemon's long jobs (create, save, restore, migrate, export, import, snapshot, clone, shutdown -w; started with --async): list, show, wait, cancel", "operation list [--json] | operation show ID [--json] | operation wait ID [--timeout D] [--json] | operation cancel ID [-w] [--json]", runOperation},
		{"export", "write a domain (running or not) to one checked, compressed archive", "export NAME -o FILE [--json] [--async]", runExport},
		{"import", "create a domain from an export archive (checked before anything changes)", "import FILE [--dir DIR] [--name NEW] [--no-start | -p] [--tenant T] [--json] [--async]", runImport},
		{"network-attach", "add a vif to a running domain (xl vif spec; defaults without one)", "network-attach NAME [VIFSPEC]", runNetworkAttach},
		{"network-detach", "remove a vif attached while the domain runs", "network-detach NAME DEVID|MAC", func(e *env, args []string) error {
			fs := flag.NewFlagSet("network-detach", flag.ContinueOnError)
			pos, err := parse(fs, args, 2, 2)
			if err != nil {
				return err
			}
			return e.client().Action(ctx(), pos[0], "network-detach", api.NetworkRequest{Dev: pos[1]})
		}},
		{"network-list", "a domain's vifs with taps and slots", "network-list NAME [--json]", runNetworkList},
		{"network", "managed networks that vifs name in bridge=: bridged (with an uplink) or NAT (DHCP, DNS, masquerade)", "network create NAME [--bridge BR] [--uplink IF | --nat --subnet CIDR] [--tenant T | --shared] | network list [--json] | network show NAME | network leases NAME [--json] | network delete NAME", runNetwork},
		{"pool", "storage pools (directories of volumes)", "pool create NAME --dir PATH [--tenant T | --shared] | pool list [--json] | pool delete NAME", runPool},
		{"volume", "volumes in a pool; --from makes a thin clone of a template", "volume create POOL NAME SIZE [--format raw|qcow2] | volume create POOL NAME --from TEMPLATE [SIZE] | volume list POOL [--json] | volume resize POOL NAME SIZE | volume delete POOL NAME", runVolume},
		{"image", "build the default guest image", "image default [--dir DIR]", runImage},
		{"remote", "daemons reached over HTTPS with an API token (the certificate pinned when added); local is the unix socket", "remote add NAME https://HOST:PORT --token T [--accept-certificate] [--client-cert] | remote list [--json] | remote switch NAME | remote remove NAME", runRemote},
		{"tenant", "tenants: customers that own domains, networks and pools, with memory and vCPUs reserved on the host", "tenant create NAME [--memory M] [--vcpus N] [--disk SIZE] [--transfer SIZE] | tenant list [--json] | tenant show NAME [--json] | tenant set NAME [--memory M] [--vcpus N] [--disk SIZE] [--transfer SIZE] | tenant delete NAME", runTenant},
		{"token", "API tokens for the remote API listener (serve --api-listen): the secret is shown once", "token create NAME --role ROLE [--tenant T] [--expires 30d] [--json] | token list [--json] | token revoke NAME", runToken},
		{"events", "follow the event stream: lifecycle, operations, host (--since replays)", "events [--since SEQ] [--count N] [--json]", runEvents},
		{"version", "print the version", "version", func(e *env, _ []string) error {
			fmt.Fprintln(e.stdout, "ringfence", api.Release)
			return nil
		}},
	}
}

// Run executes the command line and returns the process exit code.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer, host Host) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, socket: os.Getenv("RINGFENCE_SOCKET"), host: host, remoteName: os.Getenv("RINGFENCE_REMOTE")}
	e.socketGiven = e.socket != ""
	if e.socket == "" {
		e.socket = api.SocketPath(api.DefaultRunDir)
	}
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
		case a == "-h" || a == "--help":
			args = nil
		default:
			fmt.Fprintf(stderr, "ringfence: unknown option %s\n", a)
			return 2
		}
	}
	if len(args) == 2 && args[0] == genVerb {
		if err := runGen(stdout, args[1]); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		return 0
	}
	if len(args) > 0 {
		if run, ok := host.Hidden[args[0]]; ok {
			return run(args[1:])
		}
	}
	if len(args) == 0 || args[0] == "help" {
		usage(stdout)
		return 0
	}
	for _, v := range verbs {
		if v.name == args[0] {
			var err error
			if !localVerbs[v.name] {
				err = e.connect()
			}
			if err == nil {
				err = v.run(e, args[1:])
			}
			if err == nil {
				return 0
			}
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			var ue usageError
			if errors.As(err, &ue) {
				fmt.Fprintf(stderr, "ringfence %s: %s\nusage: ringfence %s\n", v.name, ue.msg, v.usage)
				return 2
			}
			var ee exitError
			if errors.As(err, &ee) {
				return ee.code
			}
			fmt.Fprintf(stderr, "ringfence %s: error: %v\n", v.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "ringfence: unknown command %q; see `ringfence help`\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "ringfence: guaranteed-resource virtual machines on KVM/QEMU,\ndriven by Xen domain files")
	fmt.Fprintln(w, "\nusage: ringfence [--socket PATH | --remote NAME] COMMAND [ARGS]\n\ncommands:")
	vs := append([]verb(nil), verbs...)
	sort.Slice(vs, func(i, j int) bool { return vs[i].name < vs[j].name })
	width := 0
	for _, v := range vs {
		width = max(width, len(v.name))
	}
	for _, v := range vs {
		lines := wrapWords(v.summary, 80-2-width-1)
		fmt.Fprintf(w, "  %-*s %s\n", width, v.name, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(w, "  %-*s %s\n", width, "", l)
		}
	}
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
	if err != nil {
		return nil, usageError{err.Error()}
	}
	return pos, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func ctx() context.Context { return context.Background() }
