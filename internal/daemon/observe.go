package daemon

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"

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

// auditLog is GET /1.0/audit?since=SEQ&limit=N: the records after SEQ,
// oldest first; without since, the newest N (default 100).
func (s *Server) auditLog(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := queryUint(q.Get("limit"), 100)
	if err != nil || limit > audit.MaxLimit {
		reply(w, nil, api.Errorf(api.ErrInvalid, "limit %q: a number of records, at most %d", q.Get("limit"), audit.MaxLimit))
		return
	}
	if !q.Has("since") {
		out, err := s.audit.Tail(r.Context(), int(limit))
		reply(w, out, err)
		return
	}
	since, err := queryUint(q.Get("since"), 0)
	if err != nil {
		reply(w, nil, api.Errorf(api.ErrInvalid, "since %q: a record's sequence number", q.Get("since")))
		return
	}
	out, err := s.audit.Since(r.Context(), since, int(limit))
	reply(w, out, err)
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
		h(sw, r)
		if s.audit == nil {
			return
		}
		s.auditCall(r, sw.status(), "")
	}
}

// auditCall records request r as answered with code; op names the
// operation whose end this is ("" for the call itself).
func (s *Server) auditCall(r *http.Request, code int, op string) {
	if s.audit == nil {
		return
	}
	p := principalOf(r.Context())
	rec := api.AuditRecord{Principal: p.Name, Kind: string(p.Kind), Role: string(p.Role), Tenant: p.Tenant, Remote: p.Remote,
		Method: r.Method, Path: r.URL.Path, Status: code, Class: api.ClassOfStatus(code), Operation: op}
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
