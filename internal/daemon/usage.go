package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/spec"
	"github.com/ringfence/ringfence/internal/usage"
)

// DefaultPrices is the price file `usage invoice` rates with, unless
// serve --prices names another.
const DefaultPrices = "/etc/ringfence/prices.conf"

// usageRoutes: the usage ledger's records and a month's invoice. A
// tenant's principal sees its own tenant's only.
func (s *Server) usageRoutes() []route {
	return []route{
		{"GET", "/usage", auth.UsageRead, func(w http.ResponseWriter, r *http.Request) {
			f, err := usageQuery(r.URL.Query(), principalOf(r.Context()), time.Now())
			if err != nil {
				reply(w, nil, err)
				return
			}
			rows, next, err := s.usage.Rows(r.Context(), f)
			reply(w, api.UsagePage{Rows: rows, Next: next}, err)
		}},
		{"GET", "/usage/invoice", auth.UsageRead, func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			tenant, err := tenantFilter(q, principalOf(r.Context()))
			if err != nil {
				reply(w, nil, err)
				return
			}
			p, err := loadPrices(s.cfg.Prices)
			if err != nil {
				reply(w, nil, err)
				return
			}
			inv, err := s.usage.Invoice(r.Context(), q.Get("month"), tenant, p)
			reply(w, inv, err)
		}},
	}
}

// maxUsageRows bounds one page of GET /usage.
const maxUsageRows = 10000

// usageQuery reads GET /usage's query: from, to (RFC 3339; default: this
// month so far), tenant, domain, by (hour, day, month), cursor, limit.
func usageQuery(q url.Values, p auth.Principal, now time.Time) (usage.Filter, error) {
	var f usage.Filter
	y, m, _ := now.UTC().Date()
	from, to := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC), now
	for _, t := range []struct {
		key string
		dst *time.Time
	}{{"from", &from}, {"to", &to}} {
		if v := q.Get(t.key); v != "" {
			tm, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, api.Errorf(api.ErrInvalid, "%s=%q: write a time as RFC 3339, e.g. 2026-12-01T00:00:00Z", t.key, v)
			}
			*t.dst = tm
		}
	}
	if !to.After(from) {
		return f, api.Errorf(api.ErrInvalid, "to (%s) must be after from (%s)", to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	f.FromNs, f.ToNs, f.Domain, f.By, f.Cursor = from.UnixNano(), to.UnixNano(), q.Get("domain"), q.Get("by"), q.Get("cursor")
	if f.By != "" && !slices.Contains(usage.Periods, f.By) {
		return f, api.Errorf(api.ErrInvalid, "by=%q: sum by hour, day or month (or leave it out for each record)", f.By)
	}
	limit, err := queryUint(q.Get("limit"), maxUsageRows)
	if err != nil || limit == 0 || limit > maxUsageRows {
		return f, api.Errorf(api.ErrInvalid, "limit %q: a number of rows, 1..%d", q.Get("limit"), maxUsageRows)
	}
	f.Limit = int(limit)
	f.Tenant, err = tenantFilter(q, p)
	return f, err
}

// tenantFilter is the tenant a usage query is about: a tenant's principal
// is held to its own (asking for another is refused); a host-wide role
// names any (?tenant= with no value: the host's own domains) or none.
func tenantFilter(q url.Values, p auth.Principal) (*string, error) {
	if p.Role.Tenanted() {
		if q.Has("tenant") && q.Get("tenant") != p.Tenant {
			return nil, api.Errorf(api.ErrForbidden, "%s reads its own tenant's usage only, not %q's", p, q.Get("tenant"))
		}
		t := p.Tenant
		return &t, nil
	}
	if !q.Has("tenant") {
		return nil, nil
	}
	t := q.Get("tenant")
	return &t, nil
}

// loadPrices reads the price file (`vcpu_hour = 0.012` a line).
func loadPrices(path string) (usage.Prices, error) {
	if path == "" {
		path = DefaultPrices
	}
	src, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return usage.Prices{}, api.Errorf(api.ErrUnavailable, "no price file at %s: write one (currency, vcpu_hour, ram_gib_hour, disk_gib_month, transfer_gb, p95_mbit: `vcpu_hour = 0.012` a line) or start serve with --prices FILE", path)
	}
	if err != nil {
		return usage.Prices{}, fmt.Errorf("reading the price file: %w", err)
	}
	p, err := usage.ParsePrices(path, src)
	if err != nil {
		return p, api.Errorf(api.ErrInvalid, "the price file: %v", err)
	}
	return p, nil
}

// quotaEvery is how often transfer quotas are checked: a crossing is
// acted on within this (well within the minute promised).
const quotaEvery = 5 * time.Second

// watchQuotas checks the transfer quotas until ctx ends.
func (s *Server) watchQuotas(ctx context.Context) {
	t := time.NewTicker(quotaEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.checkQuotas(ctx)
	}
}

// checkQuotas acts on every domain or tenant over its monthly transfer
// quota: the first time, an event (and a pause, if that is its action);
// every time, its throttle kept on its running vifs.
func (s *Server) checkQuotas(ctx context.Context) {
	doms := s.mgr.List(true)
	var subjects []usage.Subject
	for _, d := range doms {
		if d.Spec.TransferQuota > 0 {
			subjects = append(subjects, usage.Subject{Name: d.Spec.Name, Bytes: d.Spec.TransferQuota, Action: d.Spec.TransferAction})
		}
	}
	if s.tenants != nil {
		ts, _ := s.tenants.List(ctx)
		for _, t := range ts {
			if t.Quota.TransferBytes > 0 {
				subjects = append(subjects, usage.Subject{Tenant: true, Name: t.Name, Bytes: t.Quota.TransferBytes, Action: t.Quota.TransferAction})
			}
		}
	}
	over, err := s.usage.CheckQuotas(ctx, subjects)
	if err != nil {
		s.log.Error("checking transfer quotas", "err", err)
	}
	stats := s.mgr.Stats()
	for _, c := range over {
		s.enforceQuota(ctx, c, doms, stats)
	}
}

// enforceQuota takes a crossed quota's action on the domains it covers.
func (s *Server) enforceQuota(ctx context.Context, c usage.Crossing, doms []api.Domain, stats api.Stats) {
	kind, bps, _ := spec.ParseTransferAction(c.Action)
	covered := func(d api.Domain) bool { return c.Tenant && d.Tenant == c.Name || !c.Tenant && d.Spec.Name == c.Name }
	if c.First {
		ev := api.Event{Type: api.EventUsage, Action: api.EvQuotaCrossed,
			Detail: fmt.Sprintf("%s moved %d bytes this month, over its transfer quota of %d: %s", c.Subject, c.Used, c.Bytes, kind)}
		if kind == spec.TransferThrottle {
			ev.Detail += fmt.Sprintf(" to %d bit/s", bps*8)
		}
		if c.Tenant {
			ev.Tenant = c.Name
		} else {
			ev.Domain = c.Name
			if d, err := s.mgr.Owner(c.Name); err == nil {
				ev.Tenant = d
			}
		}
		if s.bus != nil {
			s.bus.Publish(ev)
		}
		s.log.Warn("transfer quota crossed", "subject", c.Subject.String(), "used", c.Used, "quota", c.Bytes, "action", c.Action)
	}
	for _, d := range doms {
		if !covered(d) {
			continue
		}
		switch {
		case kind == spec.TransferPause && c.First && d.State == api.StateRunning:
			if err := s.mgr.Pause(ctx, d.Spec.Name); err != nil {
				s.log.Error("pausing a domain over its transfer quota", "name", d.Spec.Name, "err", err)
			}
		case kind == spec.TransferThrottle:
			s.throttle(d.Spec.Name, bps, stats)
		}
	}
}

// throttle keeps a domain's running vifs at bytesPerSec.
func (s *Server) throttle(name string, bytesPerSec int64, stats api.Stats) {
	for _, ds := range stats.Domains {
		if ds.Name != name {
			continue
		}
		for _, v := range ds.Vifs {
			if err := s.nets.Throttle(v.Tap, bytesPerSec); err != nil {
				s.log.Error("throttling a vif over its transfer quota", "name", name, "tap", v.Tap, "err", err)
			}
		}
	}
}
