package cli

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
)

// runVCPUList is xl vcpu-list: every running domain's vCPUs, or the
// named domains'.
func runVCPUList(e *env, args []string) error {
	fs := flag.NewFlagSet("vcpu-list", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON: the domains with their vCPUs")
	names, err := parse(fs, args, 0, -1)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		ds, err := e.client().List(ctx())
		if err != nil {
			return err
		}
		for _, d := range ds {
			if d.PID != 0 {
				names = append(names, d.Spec.Name)
			}
		}
	}
	type domVCPUs struct {
		Name  string     `json:"name"`
		ID    int        `json:"id"`
		VCPUs []api.VCPU `json:"vcpus"`
	}
	var out []domVCPUs
	for _, n := range names {
		d, err := e.client().Get(ctx(), n)
		if err != nil {
			return err
		}
		vs, err := e.client().VCPUs(ctx(), n)
		if err != nil {
			return err
		}
		out = append(out, domVCPUs{d.Spec.Name, d.ID, vs})
	}
	if *asJSON {
		if out == nil {
			out = []domVCPUs{}
		}
		return printJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "%-24s %5s %4s %4s %5s %9s  %s\n", "Name", "ID", "VCPU", "CPU", "State", "Time(s)", "Affinity (Hard)")
	for _, d := range out {
		for _, v := range d.VCPUs {
			cpu, state, t := "-", "--p", "-"
			if v.Online {
				cpu, t = strconv.Itoa(v.CPU), fmt.Sprintf("%.1f", v.TimeSec)
				state = map[string]string{"r": "r--", "b": "-b-", "p": "--p"}[v.State]
			}
			fmt.Fprintf(e.stdout, "%-24s %5d %4d %4s %5s %9s  %s\n", d.Name, d.ID, v.VCPU, cpu, state, t, v.Affinity)
		}
	}
	return nil
}

// runVCPUSet is xl vcpu-set NAME N.
func runVCPUSet(e *env, args []string) error {
	pos, err := parse(flag.NewFlagSet("vcpu-set", flag.ContinueOnError), args, 2, 2)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(pos[1])
	if err != nil || n < 1 {
		return usageError{fmt.Sprintf("vcpu count %q: a number from 1 to the domain's maxvcpus", pos[1])}
	}
	return e.client().Action(ctx(), pos[0], "vcpu-set", api.VCPUSetRequest{VCPUs: n})
}

// runSysRq is xl sysrq NAME KEY.
func runSysRq(e *env, args []string) error {
	pos, err := parse(flag.NewFlagSet("sysrq", flag.ContinueOnError), args, 2, 2)
	if err != nil {
		return err
	}
	return e.client().Action(ctx(), pos[0], "sysrq", api.SysRqRequest{Key: pos[1]})
}

// runTrigger is xl trigger NAME EVENT (xl's optional vCPU is accepted
// for nmi only as 0: QEMU's inject-nmi has no target).
func runTrigger(e *env, args []string) error {
	pos, err := parse(flag.NewFlagSet("trigger", flag.ContinueOnError), args, 2, 3)
	if err != nil {
		return err
	}
	if len(pos) == 3 && pos[2] != "0" {
		return usageError{"a vCPU other than 0: QEMU injects an NMI into every vCPU, not one"}
	}
	return e.client().Action(ctx(), pos[0], "trigger", api.TriggerRequest{Event: pos[1]})
}

// runRename is xl rename NAME NEW.
func runRename(e *env, args []string) error {
	pos, err := parse(flag.NewFlagSet("rename", flag.ContinueOnError), args, 2, 2)
	if err != nil {
		return err
	}
	if _, err := e.client().Rename(ctx(), pos[0], pos[1]); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "Renamed %s to %s\n", pos[0], pos[1])
	return nil
}

// runDomid is xl domid NAME: the ID of a running domain.
func runDomid(e *env, args []string) error {
	pos, err := parse(flag.NewFlagSet("domid", flag.ContinueOnError), args, 1, 1)
	if err != nil {
		return err
	}
	d, err := e.client().Get(ctx(), pos[0])
	if err != nil {
		return err
	}
	if d.PID == 0 {
		return api.Errorf(api.ErrNotFound, "%s is %s: only a running domain has an ID", d.Spec.Name, d.State)
	}
	fmt.Fprintln(e.stdout, d.ID)
	return nil
}

// runDomname is xl domname ID: the name of the running domain with ID.
func runDomname(e *env, args []string) error {
	pos, err := parse(flag.NewFlagSet("domname", flag.ContinueOnError), args, 1, 1)
	if err != nil {
		return err
	}
	id, err := strconv.Atoi(pos[0])
	if err != nil || id < 0 {
		return usageError{fmt.Sprintf("domain ID %q: a number (ringfence list shows them)", pos[0])}
	}
	ds, err := e.client().List(ctx())
	if err != nil {
		return err
	}
	for _, d := range ds {
		if d.ID == id && d.PID != 0 {
			fmt.Fprintln(e.stdout, d.Spec.Name)
			return nil
		}
	}
	return api.Errorf(api.ErrNotFound, "no running domain has ID %d (ringfence list)", id)
}

// runDumpCore is xl dump-core NAME FILE, as an operation with progress.
func runDumpCore(e *env, args []string) error {
	fs := flag.NewFlagSet("dump-core", flag.ContinueOnError)
	async := asyncFlag(fs)
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	// The core is written on the daemon's host: over a remote, FILE is
	// a path there.
	path, err := e.hostPath("core file", pos[1])
	if err != nil {
		return err
	}
	c, end := withBar(e, async)
	res, err := e.client().DumpCore(c, pos[0], api.DumpCoreRequest{Path: path}, nil)
	end()
	if err != nil || async.started(e) {
		return err
	}
	fmt.Fprintf(e.stderr, "Dumped the memory of %s to %s (%.1f MiB)\n", pos[0], res.Path, float64(res.Bytes)/(1<<20))
	return nil
}

// completeVerb is the hidden verb the shell completions call for the
// names they cannot know: `ringfence __complete domains`.
const completeVerb = "__complete"

func runComplete(e *env, args []string) error {
	if len(args) != 1 || args[0] != "domains" {
		return usageError{"__complete domains"}
	}
	if err := e.connect(); err != nil {
		return err
	}
	ds, err := e.client().ListAll(ctx())
	if err != nil {
		return err
	}
	var names []string
	for _, d := range ds {
		names = append(names, d.Spec.Name)
	}
	if len(names) > 0 {
		fmt.Fprintln(e.stdout, strings.Join(names, "\n"))
	}
	return nil
}
