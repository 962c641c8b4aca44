package cli

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
)

// runAudit is `ringfence audit`: who changed what, from the daemon's
// append-only log: the newest records, or those after --since SEQ.
func runAudit(e *env, args []string) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	since := fs.Uint64("since", 0, "the records after this sequence number (oldest first)")
	limit := fs.Int("limit", 0, "at most this many records (default 100; at most 10000)")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	fromSeq := false
	fs.Visit(func(f *flag.Flag) { fromSeq = fromSeq || f.Name == "since" })
	recs, err := e.client().Audit(ctx(), *since, fromSeq, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, recs)
	}
	renderAudit(e.stdout, recs)
	return nil
}

// renderAudit prints one record a line, in 80 columns: the full record
// (tenant, error class, exact time) is in --json.
func renderAudit(w io.Writer, recs []api.AuditRecord) {
	fmt.Fprintf(w, "%6s %-14s %-12s %-12s %3s %s\n", "SEQ", "TIME", "WHO", "FROM", "ST", "CALL")
	for _, r := range recs {
		who := r.Principal
		if who == "" {
			who = r.Kind
		}
		call := r.Method + " " + strings.TrimPrefix(r.Path, api.Version)
		fmt.Fprintf(w, "%6d %-14s %-12s %-12s %3d %s\n", r.Seq, r.Time.Local().Format("01-02 15:04:05"),
			cut(who+"/"+r.Role, 12), cut(r.Remote, 12), r.Status, cut(call, 80-6-14-12-12-3-5))
	}
}
