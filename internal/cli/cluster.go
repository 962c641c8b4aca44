package cli

import (
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/ringfence/ringfence/internal/api"
)

// runCluster is `cluster init|join|status|leave`: hosts as one cluster on
// etcd (the first three run a member of it).
func runCluster(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"expected init, join, status, plan or leave"}
	}
	sub, args := args[0], args[1:]
	h := &hostCmd{e: e, sub: sub, fs: flag.NewFlagSet("cluster "+sub, flag.ContinueOnError)}
	h.asJSON = h.fs.Bool("json", false, "print JSON")
	h.peerName = h.fs.String("peer-name", "", "this host's name in the cluster (default: the hostname)")
	h.fs.Var(&h.sans, "name", "an IP address (and names) other hosts reach this one by (repeatable)")
	c := e.client()
	switch sub {
	case "init":
		if _, err := parse(h.fs, args, 0, 0); err != nil {
			return err
		}
		st, err := c.ClusterInit(ctx(), api.ClusterInitRequest{PeerName: *h.peerName, Names: h.sans})
		return h.show(st, err, func(w io.Writer) {
			fmt.Fprintf(w, "Cluster started on %s (etcd %s). Other hosts: `ringfence host token --peer-name NAME` here, then `ringfence cluster join TOKEN` there.\n", st.Name, st.Etcd)
		})
	case "join":
		witness := h.fs.Bool("witness", false, "an etcd member only, never given domains (the third vote of a two-host site)")
		pos, err := parse(h.fs, args, 0, 1)
		if err != nil {
			return err
		}
		req := api.ClusterJoinRequest{PeerName: *h.peerName, Names: h.sans, Witness: *witness}
		if len(pos) == 1 {
			req.Token = pos[0]
		}
		st, err := c.ClusterJoin(ctx(), req)
		return h.show(st, err, func(w io.Writer) {
			fmt.Fprintf(w, "Joined the cluster as %s (etcd %s); %d hosts.\n", st.Name, st.Etcd, len(st.Hosts))
		})
	case "status":
		if _, err := parse(h.fs, args, 0, 0); err != nil {
			return err
		}
		st, err := c.ClusterStatus(ctx())
		return h.show(st, err, func(w io.Writer) { printCluster(w, st); printHA(w, st.HA) })
	case "plan":
		return h.clusterPlan(args)
	case "leave":
		if _, err := parse(h.fs, args, 0, 0); err != nil {
			return err
		}
		if err := c.ClusterLeave(ctx()); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, "This host left the cluster; it stands alone again.")
		return nil
	}
	return usageError{fmt.Sprintf("unknown `cluster %s`: expected init, join, status, plan or leave", sub)}
}

func printCluster(w io.Writer, st api.ClusterStatus) {
	fmt.Fprintf(w, "This host: %s, etcd %s, %s\n", st.Name, st.Etcd, st.State)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tADDRESS\tETCD\tVOTE\tSTATE\tJOINED")
	for _, h := range st.Hosts {
		vote, state := "-", "down"
		if h.Voting {
			vote = "yes"
		}
		if h.Leader {
			vote = "leader"
		}
		if h.Alive {
			state = "up"
		}
		if h.Excluded {
			state += ",evacuated"
		}
		role := h.Etcd
		if h.Witness {
			role += ",witness"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.Addr, role, vote, state, h.Joined.Local().Format("2006-01-02 15:04"))
	}
	tw.Flush()
}

// evacuate is `host evacuate HOST` (every domain live-migrated off it,
// the host excluded) and `host resume HOST`.
func (h *hostCmd) evacuate(args []string) error {
	parallel := 0
	if h.sub == "evacuate" {
		h.fs.IntVar(&parallel, "parallel", 2, "live migrations at once")
	}
	pos, err := parse(h.fs, args, 1, 1)
	if err != nil {
		return err
	}
	if h.sub == "resume" {
		st, err := h.e.client().Resume(ctx(), pos[0])
		return h.show(st, err, func(w io.Writer) {
			fmt.Fprintf(w, "%s takes domains again.\n", pos[0])
		})
	}
	ev, err := h.e.client().Evacuate(ctx(), pos[0], api.EvacuateRequest{Parallel: parallel})
	return h.show(ev, err, func(w io.Writer) {
		for _, m := range ev.Moved {
			fmt.Fprintf(w, "%s -> %s\n", m.Domain, m.To)
		}
		fmt.Fprintf(w, "%s is empty (%d moved) and excluded until `ringfence host resume %s`.\n", ev.Host, len(ev.Moved), ev.Host)
	})
}
