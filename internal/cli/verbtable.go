package cli

import (
	"flag"
	"fmt"

	"github.com/ringfence/ringfence/internal/api"
)

// verb is one row of the command table: what help, the man pages and the
// shell completions are generated from. The flags are not repeated here:
// each verb declares them on its own FlagSet (with descriptions and
// defaults), and help collects them by running the verb with --help
// (flagSets), so they cannot drift apart.
type verb struct {
	name    string
	group   string // one of groups
	summary string // a line for `ringfence help`
	usage   string // synopsis, without "ringfence "
	example string // one example, without "ringfence "
	// subs are the subcommands that have flags of their own (help asks
	// each for its flags); nil for a verb with one set.
	subs []string
	run  func(e *env, args []string) error
	// local: never sent to a remote (runs on this host, or edits the
	// client's own settings).
	local bool
	// hostFlags are the flags of a verb that runs on the host rather than
	// through the API (serve), from cli.Host.
	hostFlags func(h Host) []*flag.FlagSet
}

// Groups of `ringfence help`, in order.
const (
	grpDomains  = "domains"
	grpDevices  = "devices"
	grpStorage  = "storage"
	grpNetworks = "networks"
	grpHost     = "host"
	grpAPI      = "api"
)

var groups = []struct{ name, title string }{
	{grpDomains, "Domains: made, run, stopped, moved"},
	{grpDevices, "Devices: vCPUs, memory, disks, media, vifs, console"},
	{grpStorage, "Storage: pools, volumes, snapshots, archives"},
	{grpNetworks, "Networks"},
	{grpHost, "The host: its daemon, facts, store, tenants, trust"},
	{grpAPI, "The API and this command: remotes, tokens, operations, events"},
}

var verbs []verb

func init() {
	verbs = append(append(append(domainVerbs(), deviceVerbs()...), storageVerbs()...), append(hostVerbs(), apiVerbs()...)...)
}

func domainVerbs() []verb {
	return []verb{
		{name: "create", group: grpDomains, summary: "create a domain from a domain file (KEY=VALUE overrides it), or a server from an OS image (--image: thin clone, cloud-init seed, started)", usage: "create FILE [KEY=VALUE...] [-p] [-c] [--dry-run] [--tenant T] [--host H] [--json] [--async] | create --image IMG NAME --ssh-key FILE [--ip ADDR] [--network NET] [--memory M] [--vcpus N] [--disk-size S] [--hostname H] [--password-hash H] [--user-data FILE] [--firmware] [-w [--timeout S]]", example: "create --image debian-12 web01 --ssh-key id.pub --ip 10.77.0.10 -w", run: runCreate},
		{name: "exec", group: grpDomains, summary: "run a command in a running guest through its guest agent (no shell; exits with its status)", usage: "exec NAME [-i] [--timeout S] -- CMD [ARG...]", example: "exec web01 -- systemctl restart nginx", run: runExec},
		{name: "set-password", group: grpDomains, summary: "set a guest user's password through its guest agent (read from the terminal or standard input)", usage: "set-password NAME USER", example: "set-password web01 root", run: runSetPassword},
		{name: "list", group: grpDomains, summary: "list domains (--all: the defined stopped ones too, with why they stopped)", usage: "list [--all] [-l | -v] [--json] [NAME...]", example: "list -v", run: runList},
		{name: "define", group: grpDomains, summary: "store a domain without starting it (kept across stops and host reboots)", usage: "define FILE [--json]", example: "define /etc/ringfence/web01.cfg", run: runDefine},
		{name: "undefine", group: grpDomains, summary: "remove a domain's definition (a running one runs on, transient)", usage: "undefine NAME", example: "undefine web01", run: runUndefine},
		{name: "autostart", group: grpDomains, summary: "start a defined domain at host boot, in order", usage: "autostart NAME on|off [--order N] [--delay SEC]", example: "autostart web01 on --order 10", run: runAutostart},
		{name: "start", group: grpDomains, summary: "start a stopped domain again (kept after a shutdown or crash, or stopped by the crash-loop brake)", usage: "start NAME [-p]", example: "start web01", run: runStart},
		{name: "stop", group: grpDomains, summary: "shut a domain down (the ACPI power button; = shutdown)", usage: "stop NAME [-w [--async]] [--force] [--timeout SEC]", example: "stop web01 -w", run: runShutdown},
		{name: "shutdown", group: grpDomains, summary: "press the ACPI power button (-a/--all: every guest, as at host shutdown)", usage: "shutdown NAME|-a [-w [--async]] [--force] [--timeout SEC] [--save DIR]", example: "shutdown -a --timeout 120", run: runShutdown},
		{name: "reboot", group: grpDomains, summary: "restart a domain: the ACPI power button, then on_reboot (xl, virsh)", usage: "reboot NAME|-a [-w] [--force] [--timeout SEC]", example: "reboot web01 -w", run: runReboot},
		{name: "reset", group: grpDomains, summary: "hard-reset a domain (it then follows on_reboot)", usage: "reset NAME", example: "reset web01", run: actionVerb("reset")},
		{name: "destroy", group: grpDomains, summary: "terminate a domain immediately", usage: "destroy NAME", example: "destroy web01", run: actionVerb("destroy")},
		{name: "pause", group: grpDomains, summary: "pause a domain's vCPUs", usage: "pause NAME", example: "pause web01", run: actionVerb("pause")},
		{name: "unpause", group: grpDomains, summary: "resume a paused domain", usage: "unpause NAME", example: "unpause web01", run: actionVerb("unpause")},
		{name: "rename", group: grpDomains, summary: "give a domain a new name (a running one keeps running)", usage: "rename NAME NEW", example: "rename web01 web01-old", run: runRename},
		{name: "domid", group: grpDomains, summary: "the domain ID of a running domain", usage: "domid NAME", example: "domid web01", run: runDomid},
		{name: "domname", group: grpDomains, summary: "the name of the running domain with an ID", usage: "domname ID", example: "domname 7", run: runDomname},
		{name: "info", group: grpDomains, summary: "host facts: CPUs, memory, accelerator, QEMU, cgroups, ledger; with NAME, one domain's (why it last stopped)", usage: "info [NAME] [--json]", example: "info web01", run: runInfo},
		{name: "uptime", group: grpDomains, summary: "domain uptimes", usage: "uptime [--json] [NAME...]", example: "uptime", run: runUptime},
		{name: "top", group: grpDomains, summary: "live per-domain CPU, memory, steal, network and disk figures (xentop)", usage: "top [-b] [-i N] [-d SECS] [-f] [--sort KEY] [--json]", example: "top --sort cpu", run: runTop},
		{name: "log", group: grpDomains, summary: "a domain's console (or QEMU) log, kept after it is gone", usage: "log NAME [--qemu] [--tail BYTES]", example: "log web01 --tail 4096", run: runLog},
		{name: "save", group: grpDomains, summary: "save a domain's state to a file (it is gone afterwards; -c keeps it running)", usage: "save [-c] [--async] NAME FILE", example: "save web01 /srv/save/web01.save", run: runSave},
		{name: "restore", group: grpDomains, summary: "start a domain from a save file", usage: "restore [-p] [--async] FILE", example: "restore /srv/save/web01.save", run: runRestore},
		{name: "migrate", group: grpDomains, summary: "live-migrate a domain to another host", usage: "migrate NAME HOST:PORT [--max-downtime MS] [--with-storage [--storage-dir DIR]] [--plain-stream] [--json] [--async] | migrate --cancel NAME", example: "migrate web01 host2:7443", run: runMigrate},
		{name: "clone", group: grpDomains, summary: "a new domain from a running or stopped one: thin-cloned disks, new MACs", usage: "clone SRC NEW [-p] [--vif SPEC]... [--set KEY=VALUE]... [--tenant T] [--json] [--async]", example: "clone web01 web02 --set memory=512", run: runClone},
		{name: "config", group: grpDomains, summary: "check, show or export domain files; update or edit a definition", usage: "config check [--strict] [--json] [-q] FILE... | config show FILE [--json] | config export NAME | config update NAME FILE | config edit NAME", example: "config check /etc/ringfence/*.cfg", subs: []string{"check", "show", "export", "update", "edit"}, run: runConfig},
		{name: "dump-core", group: grpDomains, summary: "write a domain's memory to a new file as an ELF core (crash, gdb)", usage: "dump-core NAME FILE [--async]", example: "dump-core web01 /srv/cores/web01.core", run: runDumpCore},
		{name: "sysrq", group: grpDomains, summary: "send Magic SysRq KEY to a Linux guest (Alt+SysRq+KEY)", usage: "sysrq NAME KEY", example: "sysrq web01 s", run: runSysRq},
		{name: "trigger", group: grpDomains, summary: "inject a platform event: nmi, reset, power or s3resume", usage: "trigger NAME nmi|reset|power|s3resume", example: "trigger web01 nmi", run: runTrigger},
	}
}

func deviceVerbs() []verb {
	return []verb{
		{name: "console", group: grpDevices, summary: "attach to a domain's serial console (Ctrl-] detaches; -e sets another key)", usage: "console NAME [-e CHAR] [--no-history] [--until TEXT [--timeout SEC]]", example: "console web01 -e ^A", run: runConsole},
		{name: "vnc", group: grpDevices, summary: "a vnc = 1 domain's display on a local port for any VNC viewer (tunnelled over the API; no port on the host)", usage: "vnc NAME [--listen ADDR]", example: "vnc web01 --listen 127.0.0.1:5901", run: runVNC},
		{name: "vcpu-list", group: grpDevices, summary: "a domain's vCPUs: host CPU, state, time, affinity (xl vcpu-list)", usage: "vcpu-list [--json] [NAME...]", example: "vcpu-list web01", run: runVCPUList},
		{name: "vcpu-set", group: grpDevices, summary: "hot-plug or unplug vCPUs, within maxvcpus", usage: "vcpu-set NAME N", example: "vcpu-set web01 4", run: runVCPUSet},
		{name: "vcpu-pin", group: grpDevices, summary: "pin vCPUs to host CPUs", usage: "vcpu-pin NAME VCPU|all CPUS", example: "vcpu-pin web01 all 2-3", run: runVCPUPin},
		{name: "sched-credit", group: grpDevices, summary: "show or set CPU weight and cap", usage: "sched-credit [-d NAME] [-w WEIGHT] [-c CAP]", example: "sched-credit -d web01 -w 512", run: runSchedCredit},
		{name: "mem-set", group: grpDevices, summary: "set a domain's memory (balloon), within maxmem", usage: "mem-set NAME MEM (b/k/m/g suffix; KiB without, as xl)", example: "mem-set web01 512m", run: memVerb("mem-set")},
		{name: "mem-max", group: grpDevices, summary: "lower the ceiling mem-set may reach", usage: "mem-max NAME MEM", example: "mem-max web01 768m", run: memVerb("mem-max")},
		{name: "block-attach", group: grpDevices, summary: "add a disk to a running domain (xl disk spec)", usage: "block-attach NAME DISKSPEC", example: "block-attach web01 /srv/vm/data.img,raw,xvdb,w", run: blockVerb("block-attach", 2, func(p []string) api.BlockRequest { return api.BlockRequest{Spec: p[1]} })},
		{name: "block-detach", group: grpDevices, summary: "remove a disk attached while the domain runs", usage: "block-detach NAME VDEV", example: "block-detach web01 xvdb", run: blockVerb("block-detach", 2, func(p []string) api.BlockRequest { return api.BlockRequest{VDev: p[1]} })},
		{name: "block-list", group: grpDevices, summary: "a domain's disks, and what its VM has in them", usage: "block-list NAME [--json]", example: "block-list web01", run: runBlockList},
		{name: "cd-insert", group: grpDevices, summary: "put a medium in a CD-ROM drive", usage: "cd-insert NAME VDEV FILE", example: "cd-insert web01 hdc /srv/iso/rescue.iso", run: runCDInsert},
		{name: "cd-eject", group: grpDevices, summary: "empty a CD-ROM drive", usage: "cd-eject NAME VDEV", example: "cd-eject web01 hdc", run: blockVerb("cd-eject", 2, func(p []string) api.BlockRequest { return api.BlockRequest{VDev: p[1]} })},
		{name: "network-attach", group: grpDevices, summary: "add a vif to a running domain (xl vif spec; defaults without one)", usage: "network-attach NAME [VIFSPEC]", example: "network-attach web01 bridge=br0,rate=100Mb/s", run: runNetworkAttach},
		{name: "network-detach", group: grpDevices, summary: "remove a vif attached while the domain runs", usage: "network-detach NAME DEVID|MAC", example: "network-detach web01 1", run: runNetworkDetach},
		{name: "network-list", group: grpDevices, summary: "a domain's vifs with taps and slots", usage: "network-list NAME [--json]", example: "network-list web01", run: runNetworkList},
	}
}

func storageVerbs() []verb {
	return []verb{
		{name: "pool", group: grpStorage, summary: "storage pools (directories of volumes)", usage: "pool create NAME --dir PATH [--tenant T | --shared] [--cluster] | pool list [--json] | pool delete NAME", example: "pool create fast --dir /srv/fast", subs: []string{"create", "list", "delete"}, run: runPool},
		{name: "volume", group: grpStorage, summary: "volumes in a pool; --from makes a thin clone of a template", usage: "volume create POOL NAME SIZE [--format raw|qcow2] | volume create POOL NAME --from TEMPLATE [SIZE] | volume list POOL [--json] | volume resize POOL NAME SIZE | volume delete POOL NAME", example: "volume create fast web02-root --from debian12 20G", subs: []string{"create", "list", "resize", "delete"}, run: runVolume},
		{name: "snapshot", group: grpStorage, summary: "named snapshots of a domain's qcow2 disks (and memory)", usage: "snapshot create NAME SNAP [--memory] [--async] | snapshot list NAME [--json] | snapshot revert NAME SNAP [--async] | snapshot delete NAME SNAP", example: "snapshot create web01 before-upgrade --memory", subs: []string{"create", "list", "revert", "delete"}, run: runSnapshot},
		{name: "export", group: grpStorage, summary: "write a domain (running or not) to one checked, compressed archive", usage: "export NAME -o FILE [--json] [--async]", example: "export web01 -o /srv/archive/web01.rfa", run: runExport},
		{name: "import", group: grpStorage, summary: "create a domain from an export archive (checked before anything changes)", usage: "import FILE [--dir DIR] [--name NEW] [--no-start | -p] [--tenant T] [--json] [--async]", example: "import /srv/archive/web01.rfa --dir /srv/vm", run: runImport},
		{name: "image", group: grpStorage, summary: "OS images: build one into a pool (debootstrap, cloud-init, guest agent), list, delete; or build the default test guest", usage: "image build NAME [--packages P,...] [--size 4G] [--pool P] [-v] [--json] | image list [--json] | image delete NAME [--pool P] | image default [--dir DIR] [--force]", example: "image build debian-12 --packages nginx", subs: []string{"build", "list", "delete", "default"}, run: runImage, local: true},
		{name: "network", group: grpNetworks, summary: "managed networks that vifs name in bridge=: bridged (with an uplink) or NAT (DHCP, DNS, masquerade)", usage: "network create NAME [--bridge BR] [--uplink IF | --nat --subnet CIDR] [--tenant T | --shared] [--cluster] | network list [--json] | network show NAME | network leases NAME [--json] | network delete NAME", example: "network create lan --nat --subnet 10.77.0.0/24", subs: []string{"create", "list", "show", "leases", "delete"}, run: runNetwork},
	}
}

func hostVerbs() []verb {
	return []verb{
		{name: "serve", group: grpHost, summary: "run the host daemon", usage: "serve [--config FILE] [--state-dir DIR] [--run-dir DIR] [--accel kvm|tcg] ...", example: "serve --api-listen :8443", local: true,
			run: hostVerb(func(e *env, args []string) int {
				socket := ""
				if e.socketGiven {
					socket = e.socket
				}
				return e.host.Serve(args, socket, e.stderr)
			}),
			hostFlags: func(h Host) []*flag.FlagSet { return hostFlagSet(h.ServeFlags) }},
		{name: "store", group: grpHost, summary: "check the daemon's store, or restore a backup (the daemon stopped)", usage: "store check [--state-dir D] [--json] | store restore [--state-dir D] [BACKUP]", example: "store check --json", local: true,
			run: hostVerb(func(e *env, args []string) int {
				return e.host.Store(args, e.stdout, e.stderr)
			}),
			hostFlags: func(h Host) []*flag.FlagSet { return hostFlagSet(h.StoreFlags) }},
		{name: "dmesg", group: grpHost, summary: "the daemon's recent log", usage: "dmesg", example: "dmesg", run: runDmesg},
		{name: "tenant", group: grpHost, summary: "tenants: customers that own domains, networks and pools, with memory and vCPUs reserved on the host", usage: "tenant create NAME [--memory M] [--vcpus N] [--disk SIZE] [--transfer SIZE] [--transfer-action A] | tenant list [--json] | tenant show NAME [--json] | tenant set NAME [--memory M] [--vcpus N] [--disk SIZE] [--transfer SIZE] [--transfer-action A] | tenant delete NAME", example: "tenant create acme --memory 8g --vcpus 8 --disk 200G", subs: []string{"create", "list", "show", "set", "delete"}, run: runTenant},
		{name: "cluster", group: grpHost, summary: "hosts as one cluster on etcd: the first host, joining, every host's state, the HA N+1 plan, leaving", usage: "cluster init [--peer-name N] [--name IP]... | cluster join [TOKEN] [--peer-name N] [--name IP]... [--witness] | cluster status [--json] | cluster plan [--json] | cluster leave", example: "cluster join TOKEN --peer-name beta --name 10.0.0.2", subs: []string{"init", "join", "status", "plan", "leave"}, run: runCluster},
		{name: "ha", group: grpDomains, summary: "restart a domain on a surviving host of the cluster when its host fails (disks on cluster pools)", usage: "ha NAME on|off", example: "ha web01 on", run: runHA},
		{name: "host", group: grpHost, summary: "this host's trust among its peers (the authority, join tokens, the peer list); evacuating a cluster's host", usage: "host trust [--peer-name N] [--name HOST]... [--offline | --ca-from DIR] | host token [--peer-name N] [--ttl 10m] | host join TOKEN [--peer-name N] [--name HOST]... | host peers [--json] | host revoke NAME | host renew | host evacuate HOST [--parallel N] [--json] | host resume HOST", example: "host token --ttl 30m", subs: []string{"trust", "token", "join", "peers", "revoke", "renew", "evacuate", "resume"}, run: runHost},
	}
}

func apiVerbs() []verb {
	return []verb{
		{name: "usage", group: grpAPI, summary: "usage accounting: records per domain (allocation, CPU, disk, network), sums by hour/day/month, invoices", usage: "usage [--from T] [--to T] [--tenant T] [--domain D] [--by hour|day|month] [--json|--csv] | usage invoice [--month YYYY-MM] [--tenant T] [--json|--csv]", example: "usage --by day --tenant acme", subs: []string{"invoice"}, run: runUsage},
		{name: "audit", group: grpAPI, summary: "who changed what: the daemon's record of every mutating call", usage: "audit [--since SEQ|TIME|DUR] [--until TIME|DUR] [--principal P] [--tenant T] [--domain D] [--limit N] [--json]", example: "audit --since 1h --domain web01", run: runAudit},
		{name: "operation", group: grpAPI, summary: "the daemon's long jobs (create, save, restore, migrate, export, import, snapshot, clone, dump-core, shutdown -w; started with --async): list, show, wait, cancel", usage: "operation list [--json] | operation show ID [--json] | operation wait ID [--timeout D] [--json] | operation cancel ID [-w] [--json]", example: "operation wait 3f2a9c", subs: []string{"list", "show", "wait", "cancel"}, run: runOperation},
		{name: "events", group: grpAPI, summary: "follow the event stream: lifecycle, operations, host (--since replays)", usage: "events [--since SEQ] [--count N] [--json]", example: "events --since 0 --count 10", run: runEvents},
		{name: "remote", group: grpAPI, summary: "daemons reached over HTTPS with an API token (the certificate pinned when added); local is the unix socket", usage: "remote add NAME https://HOST:PORT --token T [--accept-certificate] [--client-cert] | remote list [--json] | remote switch NAME | remote remove NAME", example: "remote add host2 https://host2:8443 --token rf_...", subs: []string{"add", "list", "switch", "remove"}, run: runRemote, local: true},
		{name: "token", group: grpAPI, summary: "API tokens for the remote API listener (serve --api-listen): the secret is shown once", usage: "token create NAME --role ROLE [--tenant T] [--expires 30d] [--password-stdin] [--json] | token list [--json] | token revoke NAME", example: "token create ci --role operator --expires 30d", subs: []string{"create", "list", "revoke"}, run: runToken},
		{name: "gen", group: grpAPI, summary: "write the man pages, or print a shell completion (made from this table)", usage: "gen man DIR | gen completion bash|zsh|fish", example: "gen completion bash > /etc/bash_completion.d/ringfence", run: runGen, local: true},
		{name: "help", group: grpAPI, summary: "the commands by group, or one command's synopsis, flags and example", usage: "help [VERB]", example: "help create", run: runHelp, local: true},
		{name: "version", group: grpAPI, summary: "print the version (also --version)", usage: "version", example: "version", local: true, run: func(e *env, args []string) error {
			if _, err := parse(flag.NewFlagSet("version", flag.ContinueOnError), args, 0, 0); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "ringfence", api.Release)
			return nil
		}},
	}
}

// runNetworkDetach is network-detach NAME DEVID|MAC.
func runNetworkDetach(e *env, args []string) error {
	fs := flag.NewFlagSet("network-detach", flag.ContinueOnError)
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	return e.client().Action(ctx(), pos[0], "network-detach", api.NetworkRequest{Dev: pos[1]})
}

// hostFlagSet is a host verb's flags, when the host wiring gives them.
func hostFlagSet(flags func() *flag.FlagSet) []*flag.FlagSet {
	if flags == nil {
		return nil
	}
	return []*flag.FlagSet{flags()}
}

// lookupVerb finds a verb by name.
func lookupVerb(name string) (verb, bool) {
	for _, v := range verbs {
		if v.name == name {
			return v, true
		}
	}
	return verb{}, false
}
