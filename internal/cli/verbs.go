package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/config"
)

func runCreate(e *env, args []string) error {
	fs := flag.NewFlagSet("create", flag.ContinueOnError)
	paused := fs.Bool("p", false, "leave the domain paused after creating it")
	attach := fs.Bool("c", false, "attach to the console after creating")
	dry := fs.Bool("dry-run", false, "print the spec and QEMU argv without starting")
	fs.BoolVar(dry, "n", false, "same as --dry-run")
	tenant := fs.String("tenant", "", "the tenant that owns the domain (an admin's choice; a tenant's token creates in its own)")
	asJSON := fs.Bool("json", false, "print JSON")
	onHost := fs.String("host", "", "a host of the cluster to create it on (default: the one with the most room in its ledger)")
	async := asyncFlag(fs)
	img := addImageFlags(fs)
	pos, err := parse(fs, args, 1, -1)
	if err != nil {
		return err
	}
	spec, err := createSpec(e, img, pos)
	if err != nil {
		return err
	}
	c := e.client()
	if *dry {
		d, err := c.DryRun(ctx(), spec, *tenant)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, d)
		}
		fmt.Fprintln(e.stdout, "# spec")
		printJSON(e.stdout, d.Spec)
		fmt.Fprintln(e.stdout, "# argv")
		fmt.Fprintln(e.stdout, shellQuote(d.Argv))
		fmt.Fprintf(e.stdout, "# memory guaranteed: %d MiB guest RAM + %d MiB QEMU overhead = %d MiB (the ledger's figure and the cgroup's limit)\n",
			d.Spec.MaxMemMiB, d.OverheadMiB, d.Spec.MaxMemMiB+d.OverheadMiB)
		return nil
	}
	d, err := c.Create(async.ctx(e), api.CreateRequest{Spec: spec, Paused: *paused, Tenant: *tenant, Host: *onHost})
	if err != nil || async.started(e) {
		return err
	}
	if *asJSON {
		printJSON(e.stdout, d)
	} else {
		fmt.Fprintf(e.stderr, "Created domain %s (id %d)\n", d.Spec.Name, d.ID)
	}
	if *img.wait {
		if _, err := waitAgent(e, d.Spec.Name, time.Duration(*img.waitTimeout)*time.Second); err != nil {
			return err
		}
	}
	if *attach {
		// History replays everything since the first instruction (QEMU
		// started paused until the daemon's console was attached).
		conn, err := c.Console(ctx(), d.Spec.Name, true)
		if err != nil {
			return err
		}
		return consoleLoop(e, conn, consoleEscape)
	}
	return nil
}

func shellQuote(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && !strings.ContainsAny(a, " \t'\"\\$`;&|<>()*?[]{}!#~") {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}

func runList(e *env, args []string) error {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON (the domains as the API has them)")
	all := fs.Bool("all", false, "the defined domains that are stopped too")
	long := fs.Bool("l", false, "long: each domain's configuration as JSON, as xl list -l")
	verbose := fs.Bool("v", false, "verbose: the UUID and why a stopped domain stopped, as more columns")
	names, err := parse(fs, args, 0, -1)
	if err != nil {
		return err
	}
	if *long && *verbose {
		return usageError{"-l and -v: one or the other"}
	}
	ds, err := listDomains(e, names, *all)
	if err != nil {
		return err
	}
	switch {
	case *asJSON:
		if ds == nil {
			ds = []api.Domain{}
		}
		return printJSON(e.stdout, ds)
	case *long:
		return printJSON(e.stdout, longList(ds, guestInfos(e, ds)))
	}
	printList(e.stdout, ds, *verbose)
	return nil
}

// createSpec is the domain create makes: from a domain file and
// KEY=VALUE settings, or from --image and NAME.
func createSpec(e *env, img *imageFlags, pos []string) (api.DomainSpec, error) {
	if *img.image != "" {
		if len(pos) != 1 {
			return api.DomainSpec{}, usageError{"create --image IMAGE NAME --ssh-key FILE: one NAME, no domain file"}
		}
		return img.spec(pos[0])
	}
	// xl create FILE KEY=VALUE...: the settings are appended to the file.
	for _, o := range pos[1:] {
		if !strings.Contains(o, "=") {
			return api.DomainSpec{}, usageError{fmt.Sprintf("%q after the domain file: only KEY=VALUE settings may follow it (memory=512)", o)}
		}
	}
	spec, warns, err := config.LoadOverrides(pos[0], pos[1:])
	return spec, reportLoad(e, pos[0], warns, err)
}

// longList is xl list -l: per domain its ID and configuration, and
// what its guest agent says (addresses, OS) when it answers.
func longList(ds []api.Domain, guests map[string]api.GuestInfo) []any {
	type long struct {
		DomID  int            `json:"domid"`
		Config api.DomainSpec `json:"config"`
		Guest  *api.GuestInfo `json:"guest,omitempty"`
	}
	out := []any{}
	for _, d := range ds {
		id := d.ID
		if d.PID == 0 {
			id = -1
		}
		l := long{DomID: id, Config: d.Spec}
		if g, ok := guests[d.Spec.Name]; ok {
			l.Guest = &g
		}
		out = append(out, l)
	}
	return out
}

// guestInfos asks the guest agents of the running domains that have one;
// a guest whose agent does not answer is left out.
func guestInfos(e *env, ds []api.Domain) map[string]api.GuestInfo {
	out := map[string]api.GuestInfo{}
	for _, d := range ds {
		if d.Spec.GuestAgent && d.PID != 0 {
			if g, err := e.client().GuestInfo(ctx(), d.Spec.Name); err == nil {
				out[d.Spec.Name] = g
			}
		}
	}
	return out
}

// guestRows are what info NAME shows of a guest agent's answer.
func guestRows(row func(string, any), g api.GuestInfo) {
	row("guest_os", g.OS)
	for _, n := range g.NICs {
		if n.Name != "lo" && len(n.Addresses) > 0 {
			row("guest_"+n.Name, strings.Join(n.Addresses, " "))
		}
	}
}

// printList is xl list's layout (-v: xl's UUID and reason columns, the
// reason here being why a stopped domain stopped), within 80 columns for
// names up to 24 characters (longer ones are never cut). When any domain
// has a tenant, a Tenant column follows the name, and on a host in a
// cluster a Host column: taken from the name's width in the short layout
// (so it still fits 80 columns). -v, with its 36-column UUID, sizes the
// name, tenant and host to the longest one instead (80 columns for names
// up to 10 characters on a single host).
func printList(w io.Writer, ds []api.Domain, verbose bool) {
	name := listNameColumn(ds, verbose)
	if verbose {
		fmt.Fprintf(w, "%s %4s %5s %5s %-6s %7s %s\n", name("Name", "Tenant", "Host"), "ID", "Mem", "VCPUs", "State", "Time(s)", "UUID")
	} else {
		fmt.Fprintf(w, "%s %5s %5s %5s     %-6s %9s\n", name("Name", "Tenant", "Host"), "ID", "Mem", "VCPUs", "State", "Time(s)")
	}
	var stopped []api.Domain
	for _, d := range ds {
		id := fmt.Sprint(d.ID)
		if d.PID == 0 {
			id = "-"
			if d.LastReason != "" {
				stopped = append(stopped, d)
			}
		}
		if verbose {
			uuid := d.Spec.UUID
			if uuid == "" {
				uuid = "-"
			}
			fmt.Fprintf(w, "%s %4s %5d %5d %-6s %7.1f %s\n", name(d.Spec.Name, tenantColumn(d.Tenant), d.Host), id, d.Spec.MemoryMiB, d.Spec.VCPUs, d.Flags, d.CPUTime, uuid)
			continue
		}
		fmt.Fprintf(w, "%s %5s %5d %5d     %-6s %9.1f\n", name(d.Spec.Name, tenantColumn(d.Tenant), d.Host), id, d.Spec.MemoryMiB, d.Spec.VCPUs, d.Flags, d.CPUTime)
	}
	// Why the stopped ones stopped (xl has no such line; a host admin
	// needs it first).
	for _, d := range stopped {
		fmt.Fprintf(w, "\n%s stopped: %s\n", d.Spec.Name, d.LastReason)
		for _, l := range d.LastConsole {
			fmt.Fprintf(w, "  | %s\n", l)
		}
	}
}

// listNameColumn formats the name cell of a list row, with the tenant
// and the host beside it when any domain has one.
func listNameColumn(ds []api.Domain, verbose bool) func(n, t, h string) string {
	hasTenant := slices.ContainsFunc(ds, func(d api.Domain) bool { return d.Tenant != "" })
	hasHost := slices.ContainsFunc(ds, func(d api.Domain) bool { return d.Host != "" })
	nw, tw, hw := 40-13*(btoi(hasTenant)+btoi(hasHost)), 12, 12
	if verbose {
		nw, tw, hw = len("Name"), len("Tenant"), len("Host")
		for _, d := range ds {
			nw = max(nw, len(d.Spec.Name))
			tw = max(tw, len(tenantColumn(d.Tenant)))
			hw = max(hw, len(d.Host))
		}
	}
	return func(n, t, h string) string {
		out := fmt.Sprintf("%-*s", nw, n)
		if hasTenant {
			out += fmt.Sprintf(" %-*s", tw, t)
		}
		if hasHost {
			out += fmt.Sprintf(" %-*s", hw, h)
		}
		return out
	}
}

// runStart starts a kept (stopped) domain again.
func runStart(e *env, args []string) error {
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	paused := fs.Bool("p", false, "leave it paused")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	return e.client().Action(ctx(), pos[0], "start", api.StartRequest{Paused: *paused})
}

// listDomains fetches the domains, keeping only names when any are given
// (an unknown name is an error, as in xl).
func listDomains(e *env, names []string, all bool) ([]api.Domain, error) {
	list := e.client().List
	if all || len(names) > 0 {
		list = e.client().ListAll
	}
	ds, err := list(ctx())
	if err != nil || len(names) == 0 {
		return ds, err
	}
	byName := map[string]api.Domain{}
	for _, d := range ds {
		byName[d.Spec.Name] = d
	}
	var keep []api.Domain
	for _, n := range names {
		d, ok := byName[n]
		if !ok {
			return nil, api.Errorf(api.ErrNotFound, "no domain named %q", n)
		}
		keep = append(keep, d)
	}
	return keep, nil
}

func runConsole(e *env, args []string) error {
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	noHist := fs.Bool("no-history", false, "do not replay earlier output")
	escape := fs.String("e", "^]", "the key that detaches: ^X for Ctrl-X, or one character (as xl console -e)")
	until := fs.String("until", "", "print output until this text appears, then exit (for scripts)")
	timeout := fs.Int("timeout", 60, "with --until: seconds to wait before failing")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	esc, err := escapeKey(*escape)
	if err != nil {
		return err
	}
	conn, err := e.client().Console(ctx(), pos[0], !*noHist)
	if err != nil {
		return err
	}
	if *until != "" {
		return consoleUntil(e, conn, *until, time.Duration(*timeout)*time.Second)
	}
	return consoleLoop(e, conn, esc)
}

// consoleEscape is Ctrl-], the key that detaches by default (xl's).
const consoleEscape = 0x1d

// escapeKey reads console -e: ^X is Ctrl-X (^] is the default, ^^ and ^_
// work too), or a single character.
func escapeKey(s string) (byte, error) {
	switch {
	case len(s) == 2 && s[0] == '^' && s[1] >= '@' && s[1] <= '_':
		return s[1] - '@', nil
	case len(s) == 2 && s[0] == '^' && s[1] >= 'a' && s[1] <= 'z':
		return s[1] - 'a' + 1, nil
	case len(s) == 1 && s[0] < 0x80:
		return s[0], nil
	}
	return 0, usageError{fmt.Sprintf("-e %q: a control key as ^X (^] is the default) or one ASCII character", s)}
}

// escapeName shows a detach key as people type it.
func escapeName(k byte) string {
	if k < 0x20 {
		return "Ctrl-" + string(rune(k+'@'))
	}
	return string(rune(k))
}

// consoleUntil copies console output until text appears.
func consoleUntil(e *env, conn net.Conn, text string, timeout time.Duration) error {
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(timeout))
	var seen []byte
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		e.stdout.Write(buf[:n])
		seen = append(seen, buf[:n]...)
		if bytes.Contains(seen, []byte(text)) {
			if !bytes.HasSuffix(seen, []byte("\n")) {
				fmt.Fprintln(e.stdout)
			}
			return nil
		}
		if len(seen) > 2*len(text)+8192 {
			seen = seen[len(seen)-len(text):]
		}
		if err != nil {
			return fmt.Errorf("%q did not appear on the console within %s: %v", text, timeout, err)
		}
	}
}

// consoleLoop connects the terminal to a console stream. On a terminal the
// input is raw and Ctrl-] detaches, as in xl console.
func consoleLoop(e *env, conn io.ReadWriteCloser, esc byte) error {
	defer conn.Close()
	in, isFile := e.stdin.(*os.File)
	tty := isFile && term.IsTerminal(int(in.Fd()))
	if tty {
		old, err := term.MakeRaw(int(in.Fd()))
		if err != nil {
			return err
		}
		defer term.Restore(int(in.Fd()), old)
		fmt.Fprintf(e.stderr, "[connected; %s detaches]\r\n", escapeName(esc))
	}
	done := make(chan struct{})
	go func() {
		io.Copy(e.stdout, conn)
		close(done)
	}()
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := e.stdin.Read(buf)
			if n > 0 {
				p := buf[:n]
				if tty {
					if i := strings.IndexByte(string(p), esc); i >= 0 {
						conn.Write(p[:i])
						conn.Close()
						return
					}
				}
				if _, werr := conn.Write(p); werr != nil {
					return
				}
			}
			if err != nil {
				if !tty {
					return // keep reading output after stdin ends
				}
				conn.Close()
				return
			}
		}
	}()
	<-done
	if tty {
		fmt.Fprint(e.stderr, "\r\n[detached]\r\n")
	}
	return nil
}

func runShutdown(e *env, args []string) error { return powerVerb(e, "shutdown", args) }

func runReboot(e *env, args []string) error { return powerVerb(e, "reboot", args) }

// powerVerb is shutdown and reboot: one domain, or --all (for shutdown,
// the host's own shutdown: every guest at once, destroyed after the
// timeout, or saved with --save DIR and restored at the next boot).
func powerVerb(e *env, verb string, args []string) error {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	wait := fs.Bool("w", false, "wait until it is done")
	force := fs.Bool("force", false, "after --timeout: destroy it (shutdown) or reset it (reboot)")
	fs.BoolVar(force, "F", false, "same as --force")
	timeout := fs.Int("timeout", 60, "seconds to wait with -w or --force")
	all := fs.Bool("all", false, "every running domain")
	fs.BoolVar(all, "a", false, "same as --all")
	saveDir := fs.String("save", "", "with shutdown --all: save each guest into DIR instead (restored at the next boot)")
	async := asyncFlag(fs)
	pos, err := parse(fs, args, 0, 1)
	if err != nil {
		return err
	}
	if *all == (len(pos) == 1) {
		return usageError{"give one domain, or --all"}
	}
	if *async.on && (verb != "shutdown" || !*wait || *all) {
		return usageError{"--async is for one domain's shutdown -w (the others return at once or are host-wide)"}
	}
	req := api.ShutdownRequest{Wait: *wait, Force: *force, TimeoutSec: *timeout}
	if !*all {
		if err := e.client().Action(async.ctx(e), pos[0], verb, req); err != nil || async.started(e) {
			return err
		}
		return nil
	}
	if verb == "shutdown" {
		dir := *saveDir
		if dir != "" {
			if dir, err = e.hostPath("--save", dir); err != nil {
				return err
			}
		}
		res, err := e.client().HostShutdown(e.waitCtx(), api.HostShutdownRequest{TimeoutSec: *timeout, SaveDir: dir})
		if err != nil {
			return err
		}
		names := make([]string, 0, len(res.Domains))
		for name := range res.Domains {
			names = append(names, name)
		}
		sort.Strings(names)
		bad := 0
		for _, name := range names {
			what := res.Domains[name]
			fmt.Fprintf(e.stdout, "%s: %s\n", name, what)
			if strings.HasPrefix(what, "could not") {
				bad++
			}
		}
		if bad > 0 {
			return fmt.Errorf("%d of %d domains could not be stopped", bad, len(names))
		}
		return nil
	}
	ds, err := e.client().List(ctx())
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range ds {
		if d.PID != 0 {
			if err := e.client().Action(ctx(), d.Spec.Name, verb, req); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", d.Spec.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func actionVerb(action string) func(*env, []string) error {
	return func(e *env, args []string) error {
		fs := flag.NewFlagSet(action, flag.ContinueOnError)
		pos, err := parse(fs, args, 1, 1)
		if err != nil {
			return err
		}
		return e.client().Action(ctx(), pos[0], action, nil)
	}
}

func runInfo(e *env, args []string) error {
	fs := flag.NewFlagSet("info", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args, 0, 1)
	if err != nil {
		return err
	}
	if len(pos) == 1 {
		return domainInfo(e, pos[0], *asJSON)
	}
	h, err := e.client().Host(ctx())
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, h)
	}
	w := tabwriter.NewWriter(e.stdout, 0, 0, 1, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(w, "%s\t: %v\n", k, v) }
	row("host", h.Hostname)
	row("nr_cpus", h.CPUs)
	row("total_memory", h.MemTotalMiB)
	row("free_memory", h.MemFreeMiB)
	row("accelerator", h.Accel)
	row("accelerator_reason", h.AccelReason)
	row("qemu_version", h.QEMUVersion)
	row("ringfence_version", h.Version)
	row("state_dir", h.StateDir)
	switch {
	case h.CgroupVersion == 0:
		row("cgroups", "none (--no-cgroups: nothing is enforced)")
	case h.CgroupScope != "":
		row("cgroups", fmt.Sprintf("v%d, %s (systemd scope %s)", h.CgroupVersion, h.CgroupBase, h.CgroupScope))
	default:
		row("cgroups", fmt.Sprintf("v%d, %s", h.CgroupVersion, h.CgroupBase))
	}
	row("domains", h.Domains)
	row("ledger_total", h.Ledger.TotalMiB)
	row("ledger_reserved", h.Ledger.ReservedMiB)
	row("ledger_free", h.Ledger.FreeMiB)
	row("qemu_overhead", h.QEMUOverhead)
	row("ledger_vcpus", fmt.Sprintf("%d free of %d (%d CPUs x %g)", h.Ledger.VCPUsFree, int(float64(h.Ledger.CPUs)*h.Ledger.VCPURatio+1e-9), h.Ledger.CPUs, h.Ledger.VCPURatio))
	for _, lt := range h.Ledger.Tenants {
		row("ledger_tenant_"+lt.Tenant, fmt.Sprintf("%d MiB, %d vCPUs reserved; %d MiB, %d held", lt.MemoryMiB, lt.VCPUs, lt.UsedMemoryMiB, lt.UsedVCPUs))
	}
	for _, le := range h.Ledger.Entries {
		of := ""
		if le.Tenant != "" {
			of = " (tenant " + le.Tenant + ")"
		}
		row("ledger_"+le.Domain, fmt.Sprintf("%d MiB + %d overhead, %d vCPUs%s", le.MemoryMiB, le.OverheadMiB, le.VCPUs, of))
	}
	if p := h.Peer; p != nil {
		row("peer_name", fmt.Sprintf("%s (%s)", p.Name, p.Role))
		row("peer_certificate", fmt.Sprintf("serial %s, certificate expires %s", p.Serial, p.NotAfter.Format("2006-01-02")))
		if p.Authority != "" {
			row("peer_authority", fmt.Sprintf("%s (peer list version %d, %d hosts)", p.Authority, p.ListVersion, p.Members))
		}
		if p.Warning != "" {
			row("peer_warning", p.Warning)
		}
	} else {
		row("peer_name", "none (`ringfence host trust` or `host join TOKEN`)")
	}
	for _, warn := range h.Warnings {
		row("WARNING", warn)
	}
	return w.Flush()
}

// domainInfo is `info NAME`: one domain's facts, its definition's, and
// why it last stopped (also for a stopped defined domain).
func domainInfo(e *env, name string, asJSON bool) error {
	ds, err := e.client().ListAll(ctx())
	if err != nil {
		return err
	}
	var d *api.Domain
	for i := range ds {
		if ds[i].Spec.Name == name {
			d = &ds[i]
		}
	}
	if d == nil {
		return api.Errorf(api.ErrNotFound, "no domain named %q (ringfence list --all)", name)
	}
	if asJSON {
		return printJSON(e.stdout, d)
	}
	w := tabwriter.NewWriter(e.stdout, 0, 0, 1, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(w, "%s\t: %v\n", k, v) }
	row("name", d.Spec.Name)
	row("tenant", tenantColumn(d.Tenant))
	row("state", fmt.Sprintf("%s (%s)", d.State, d.Flags))
	if d.PID != 0 {
		row("id", d.ID)
		row("pid", d.PID)
		row("started", d.StartedAt.UTC().Format(time.RFC3339))
		row("taps", strings.Join(d.Taps, " "))
	}
	row("memory", fmt.Sprintf("%d MiB (maxmem %d)", d.Spec.MemoryMiB, d.Spec.MaxMemMiB))
	row("vcpus", d.Spec.VCPUs)
	kind := "transient (created: gone once it ends)"
	if d.Defined {
		kind = "defined (kept across stops and host reboots)"
	}
	row("kind", kind)
	if d.Spec.VNC {
		pw := "no password"
		if d.Spec.VNCPassword != "" {
			pw = "password set"
		}
		row("vnc", fmt.Sprintf("on, %s (ringfence vnc %s)", pw, d.Spec.Name))
	}
	if d.Spec.HA {
		row("ha", "on (restarted on a surviving host when its host fails)")
	}
	if a := d.Autostart; a != nil && a.On {
		row("autostart", fmt.Sprintf("on, order %d, delay %d s", a.Order, a.DelaySec))
	}
	if p := d.Spec.Provision; p != nil {
		row("image", p.Image)
	}
	if g, ok := guestInfos(e, []api.Domain{*d})[d.Spec.Name]; ok {
		guestRows(row, g)
	} else if d.Spec.GuestAgent && d.PID != 0 {
		row("guest_agent", "not answering (the guest is booting, or has no qemu-guest-agent)")
	}
	if d.LastReason != "" {
		row("last_stop", d.LastReason)
	}
	for _, l := range d.LastConsole {
		row("  console", l)
	}
	return w.Flush()
}

func runUptime(e *env, args []string) error {
	fs := flag.NewFlagSet("uptime", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	names, err := parse(fs, args, 0, -1)
	if err != nil {
		return err
	}
	ds, err := listDomains(e, names, false)
	if err != nil {
		return err
	}
	type up struct {
		Name   string  `json:"name"`
		ID     int     `json:"id"`
		Uptime float64 `json:"uptime_sec"`
	}
	var out []up
	for _, d := range ds {
		out = append(out, up{d.Spec.Name, d.ID, d.UptimeSec})
	}
	if *asJSON {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "%-32s %5s %s\n", "Name", "ID", "Uptime")
	for _, u := range out {
		fmt.Fprintf(e.stdout, "%-32s %5d %s\n", u.Name, u.ID, fmtUptime(u.Uptime))
	}
	return nil
}

func fmtUptime(sec float64) string {
	d := time.Duration(sec) * time.Second
	days := int(d.Hours()) / 24
	h, m, s := int(d.Hours())%24, int(d.Minutes())%60, int(d.Seconds())%60
	if days > 0 {
		return fmt.Sprintf("%d days, %2d:%02d:%02d", days, h, m, s)
	}
	return fmt.Sprintf("%2d:%02d:%02d", h, m, s)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
