package cli

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/ringfence/ringfence/internal/api"
)

// runHA is `ha NAME on|off`: restart the domain on a surviving host of
// the cluster when its host fails (its disks on cluster pools).
func runHA(e *env, args []string) error {
	fs := flag.NewFlagSet("ha", flag.ContinueOnError)
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	on, err := onOff(pos[1])
	if err != nil {
		return err
	}
	d, err := e.client().SetHA(ctx(), pos[0], on)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "HA %s for %s\n", map[bool]string{true: "on", false: "off"}[d.Spec.HA], d.Spec.Name)
	return nil
}

// clusterPlan is `cluster plan [--json]`.
func (h *hostCmd) clusterPlan(args []string) error {
	if _, err := parse(h.fs, args, 0, 0); err != nil {
		return err
	}
	p, err := h.e.client().ClusterPlan(ctx())
	return h.show(p, err, func(w io.Writer) { printPlan(w, p) })
}

// printPlan: one line per host that could fail, what of it is HA and
// where each would go; what would not fit follows, wrapped.
func printPlan(w io.Writer, p api.HAPlan) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "IF DOWN\tHA\tNEEDS\tRESTART ON\tOK")
	var why []string
	for _, h := range p.Hosts {
		var to []string
		for d, host := range h.Placement {
			to = append(to, d+"->"+host)
		}
		sort.Strings(to)
		ok := "yes"
		if !h.OK {
			ok = "NO"
			why = append(why, h.Why)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d MiB, %d vCPUs\t%s\t%s\n", h.Host, len(h.HA), h.NeedMiB, h.NeedVCPUs, dash(strings.Join(to, " ")), ok)
	}
	tw.Flush()
	for _, s := range why {
		fmt.Fprintln(w, wrap(s, 78))
	}
	if p.OK {
		fmt.Fprintln(w, "N+1: every host's HA domains fit on the others.")
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// wrap folds s into lines of at most n columns.
func wrap(s string, n int) string { return strings.Join(wrapWords(s, n), "\n") }

// printHA is `cluster status`'s HA part.
func printHA(w io.Writer, ha *api.HAStatus) {
	if ha == nil {
		return
	}
	fmt.Fprintf(w, "HA guests here: %s\n", dash(strings.Join(ha.Guests, ", ")))
	if ha.DeadlineInSec != nil {
		fmt.Fprintf(w, "Fence deadline: in %.1f s unless the lease is renewed\n", *ha.DeadlineInSec)
	} else {
		fmt.Fprintln(w, "Fence deadline: none (no HA guest here: this host never fences)")
	}
	guard := "not running"
	if ha.GuardPID != 0 {
		guard = fmt.Sprintf("pid %d", ha.GuardPID)
	}
	fmt.Fprintf(w, "Fence guard: %s\n%s\n", guard, wrap("Watchdog: "+ha.Watchdog, 78))
	if len(ha.Fenced) > 0 {
		fmt.Fprintln(w, wrap("Fenced here: "+strings.Join(ha.Fenced, ", "), 78))
	}
}
