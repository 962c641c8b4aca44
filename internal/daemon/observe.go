package daemon

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/audit"
	"github.com/ringfence/ringfence/internal/auth"
)

// extensions name the features this daemon serves beyond the base API
// (GET /1.0): a client checks for one before calling its routes. A
// feature's branch adds its name here with its routes.
var extensions = []string{
	"definitions",       // /definitions: defined domains, autostart
	"migration_storage", // migrate with_storage: disks copied live
	"snapshots_memory",  // snapshots with the running state
	"pools",             // /pools: storage pools and volumes
	"networks",          // /networks: managed networks, NAT, leases
	"peers",             // /host/trust...: trust between hosts
	"api_reference",     // docs/openapi.json describes every route
	"audit",             // GET /audit: the record of mutating calls
	"metrics",           // GET /metrics: Prometheus text
	"operations",        // long jobs answer 202 and an Operation: /operations
	"tokens",            // /tokens: API tokens, bound client certificates
	"remote_archives",   // export/import streamed as the body
	"events",            // GET /events: the event stream, since=SEQ replays
	"remote_saves",      // save/restore streamed as the body; uploads capped
	"operation_records", // operations outlive a restart; event seqs continue
	"audit_filters",     // GET /audit: since_time, until, principal, tenant, domain
	"metrics_devices",   // per-disk and per-vif series in /metrics
	"console_websocket", // GET /domains/{name}/console: a WebSocket too
	"vnc",               // GET /domains/{name}/vnc: vnc = 1 domains' display
	"tenants",           // /tenants: tenants' quotas; owners on domains, networks, pools
}

// observeRoutes: what the API is, who changed what (the audit log), and
// the host's figures for a scraper.
func (s *Server) observeRoutes() []route {
	return []route{
		{"GET", "", auth.APIRead, func(w http.ResponseWriter, r *http.Request) {
			reply(w, api.APIInfo{APIVersion: api.Version[1:], Release: api.Release, Extensions: extensions}, nil)
		}},
		{"GET", "/audit", auth.AuditRead, s.auditLog},
		{"GET", "/metrics", auth.HostRead, func(w http.ResponseWriter, r *http.Request) { s.metrics.ServeHTTP(w, r) }},
	}
}

// auditLog is GET /1.0/audit: the records after ?since=SEQ or from
// ?since_time=T, before ?until=T (RFC 3339), of ?principal=NAME, of
// ?tenant=NAME's principals, about ?domain=NAME, oldest first; without since or since_time, the newest
// ?limit=N (default 100) of those picked.
func (s *Server) auditLog(w http.ResponseWriter, r *http.Request) {
	f, fromStart, limit, err := auditQuery(r.URL.Query())
	if err != nil {
		reply(w, nil, err)
		return
	}
	out, err := s.audit.Query(r.Context(), f, !fromStart, limit)
	reply(w, out, err)
}

// auditQuery reads GET /audit's query: the filter, whether it reads from
// a start (since, since_time), the limit.
func auditQuery(q url.Values) (audit.Filter, bool, int, error) {
	f := audit.Filter{Principal: q.Get("principal"), Tenant: q.Get("tenant"), Domain: q.Get("domain")}
	limit, err := queryUint(q.Get("limit"), 100)
	if err != nil || limit > audit.MaxLimit {
		return f, false, 0, api.Errorf(api.ErrInvalid, "limit %q: a number of records, at most %d", q.Get("limit"), audit.MaxLimit)
	}
	if f.AfterSeq, err = queryUint(q.Get("since"), 0); err != nil {
		return f, false, 0, api.Errorf(api.ErrInvalid, "since %q: a record's sequence number (since_time takes a time)", q.Get("since"))
	}
	for _, t := range []struct {
		key string
		to  *time.Time
	}{{"since_time", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(t.key); v != "" {
			if *t.to, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return f, false, 0, api.Errorf(api.ErrInvalid, "%s %q: a time in RFC 3339, e.g. 2026-01-02T15:04:05Z", t.key, v)
			}
		}
	}
	return f, q.Has("since") || q.Has("since_time"), int(limit), nil
}

func queryUint(s string, def uint64) (uint64, error) {
	if s == "" {
		return def, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// audited records every call of a mutating route (anything but GET),
// refused ones too, once it is answered: who, from where, what, and the
// status. A record that cannot be written is logged, never the call's
// failure (it has happened by then).
func (s *Server) audited(rt route, h http.HandlerFunc) http.HandlerFunc {
	if rt.method == http.MethodGet {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			// A stream cut short (http.ErrAbortHandler) is recorded too,
			// as failed, before the connection is cut.
			if p := recover(); p != nil {
				s.auditCall(r, http.StatusInternalServerError, "", r.PathValue("name"))
				panic(p)
			}
		}()
		h(sw, r)
		if s.audit == nil {
			return
		}
		s.auditCall(r, sw.status(), "", r.PathValue("name"))
	}
}

// auditCall records request r as answered with code; op names the
// operation whose end this is ("" for the call itself), domain the
// domain it was about ("" for none).
func (s *Server) auditCall(r *http.Request, code int, op, domain string) {
	if s.audit == nil {
		return
	}
	p := principalOf(r.Context())
	rec := api.AuditRecord{Principal: p.Name, Kind: string(p.Kind), Role: string(p.Role), Tenant: p.Tenant, Remote: p.Remote,
		Method: r.Method, Path: r.URL.Path, Status: code, Class: api.ClassOfStatus(code), Operation: op, Domain: domain}
	if _, err := s.audit.Append(context.WithoutCancel(r.Context()), rec); err != nil {
		s.log.Error("writing the audit record", "method", r.Method, "path", r.URL.Path, "principal", p.String(), "err", err)
	}
}

// statusWriter remembers the status a handler answered; it passes on
// flushing (streamed replies) and hijacking (upgraded connections, whose
// status is 101).
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the connection cannot be hijacked")
	}
	c, rw, err := hj.Hijack()
	if err == nil && w.code == 0 {
		w.code = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
