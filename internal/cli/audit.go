package cli

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
)

// runAudit is `ringfence audit`: who changed what, from the daemon's
// append-only log: the newest records, or those from --since (a sequence
// number, a time, or a duration ago), filtered.
func runAudit(e *env, args []string) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	since := fs.String("since", "", "from here, oldest first: a sequence number (the records after it), a time (RFC 3339) or a duration ago (1h, 30m)")
	until := fs.String("until", "", "before this time (RFC 3339) or duration ago")
	principal := fs.String("principal", "", "only the calls of this principal (a token's name, root)")
	tenant := fs.String("tenant", "", "only the calls of this tenant's principals (its tokens)")
	domain := fs.String("domain", "", "only the calls about this domain")
	limit := fs.Int("limit", 0, "at most this many records (default 100; at most 10000)")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	q := client.AuditQuery{Principal: *principal, Tenant: *tenant, Domain: *domain, Limit: *limit}
	now := time.Now()
	if *since != "" {
		if seq, err := strconv.ParseUint(*since, 10, 64); err == nil {
			q.Since, q.FromSeq = seq, true
		} else if q.SinceTime, err = auditTime("--since", *since, now); err != nil {
			return err
		}
	}
	if *until != "" {
		var err error
		if q.Until, err = auditTime("--until", *until, now); err != nil {
			return err
		}
	}
	recs, err := e.client().Audit(ctx(), q)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, recs)
	}
	renderAudit(e.stdout, recs)
	return nil
}

// auditTime reads a time as RFC 3339, or a duration before now.
func auditTime(flagName, s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usageError{fmt.Sprintf("%s %q: want a time (RFC 3339, e.g. 2026-01-02T15:04:05Z), a duration ago (1h, 30m) or, for --since, a sequence number", flagName, s)}
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
