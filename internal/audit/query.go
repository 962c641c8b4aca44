package audit

import (
	"context"
	"encoding/json"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store"
)

// Filter picks records: after a sequence number, within a time window,
// of one principal, of one tenant's principals, about one domain. Zero
// fields pick everything.
type Filter struct {
	AfterSeq     uint64
	Since, Until time.Time // Since inclusive, Until exclusive
	Principal    string
	Tenant       string // the tenant of the principal that called
	Domain       string
}

// Match reports whether r is picked by f.
func (f Filter) Match(r api.AuditRecord) bool {
	return r.Seq > f.AfterSeq &&
		(f.Since.IsZero() || !r.Time.Before(f.Since)) &&
		(f.Until.IsZero() || r.Time.Before(f.Until)) &&
		(f.Principal == "" || r.Principal == f.Principal) &&
		(f.Tenant == "" || r.Tenant == f.Tenant) &&
		(f.Domain == "" || r.Domain == f.Domain)
}

// Query returns up to limit records f picks, oldest first: the first
// ones, or with newest the last ones. Records are read in order, so a
// time filter reads from the start of the log kept (at most DefaultKeep
// records), stopping at Until.
func (l *Log) Query(ctx context.Context, f Filter, newest bool, limit int) ([]api.AuditRecord, error) {
	if limit <= 0 || limit > MaxLimit {
		limit = MaxLimit
	}
	out := []api.AuditRecord{}
	err := l.after(ctx, f.AfterSeq, func(kv store.KV) bool {
		var r api.AuditRecord
		if json.Unmarshal(kv.Value, &r) != nil {
			return true
		}
		if !f.Until.IsZero() && !r.Time.Before(f.Until) {
			return false // the log is in time order: nothing later matches
		}
		if !f.Match(r) {
			return true
		}
		out = append(out, r)
		if len(out) > limit { // newest: a window of the last limit
			out = out[1:]
		}
		return newest || len(out) < limit
	})
	return out, err
}
