package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/domain"
	"github.com/ringfence/ringfence/internal/operations"
	"github.com/ringfence/ringfence/internal/storage"
)

// operationRoutes: the long jobs the other routes start (202 Accepted and
// their Location): listed, shown, waited for, cancelled. A caller sees
// only the operations of what it may see (principal.Sees(op.Tenant)); an
// operation it may not see is answered exactly as one that does not
// exist.
func (s *Server) operationRoutes() []route {
	return []route{
		{"GET", "/operations", auth.OpsRead, func(w http.ResponseWriter, r *http.Request) {
			p := principalOf(r.Context())
			out := []api.Operation{}
			for _, op := range s.ops.List() {
				if p.Sees(op.Tenant) {
					out = append(out, op)
				}
			}
			reply(w, out, nil)
		}},
		{"GET", "/operations/{op}", auth.OpsRead, func(w http.ResponseWriter, r *http.Request) {
			op, err := s.visibleOp(r)
			reply(w, op, err)
		}},
		{"GET", "/operations/{op}/wait", auth.OpsRead, s.waitOp},
		{"DELETE", "/operations/{op}", auth.OpsRead, s.cancelOp},
	}
}

// visibleOp is the operation of the request's path, if its caller may
// see it.
func (s *Server) visibleOp(r *http.Request) (api.Operation, error) {
	id := r.PathValue("op")
	op, ok := s.ops.Get(id)
	if !ok || !principalOf(r.Context()).Sees(op.Tenant) {
		return api.Operation{}, api.Errorf(api.ErrNotFound, "no operation %s", id)
	}
	return op, nil
}

// maxWait bounds one wait; a client waits longer by asking again.
const maxWait = 10 * time.Minute

// waitOp answers once the operation has ended, or after ?timeout=SECONDS
// (default 30; fractions allowed) with it still running.
func (s *Server) waitOp(w http.ResponseWriter, r *http.Request) {
	op, err := s.visibleOp(r)
	if err != nil {
		reply(w, nil, err)
		return
	}
	timeout := 30 * time.Second
	if q := r.URL.Query().Get("timeout"); q != "" {
		sec, err := strconv.ParseFloat(q, 64)
		if err != nil || sec < 0 || sec != sec {
			reply(w, nil, api.Errorf(api.ErrInvalid, "timeout %q: want seconds (e.g. 30 or 0.2)", q))
			return
		}
		timeout = min(time.Duration(sec*float64(time.Second)), maxWait)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	op, _ = s.ops.Wait(ctx, op.ID) // on a timeout: the operation as it is now
	reply(w, op, nil)
}

// cancelOp cancels a running operation: the caller's own, or any it sees
// when it may operate domains host-wide. One that has ended is a conflict.
func (s *Server) cancelOp(w http.ResponseWriter, r *http.Request) {
	op, err := s.visibleOp(r)
	if err != nil {
		reply(w, nil, err)
		return
	}
	p := principalOf(r.Context())
	if op.Owner != p.Name && (p.Role.Tenanted() || !p.Can(auth.DomainOperate)) {
		reply(w, nil, api.Errorf(api.ErrForbidden, "operation %s is %s's: %s may cancel only its own", op.ID, op.Owner, p))
		return
	}
	if err := s.ops.Cancel(op.ID); err != nil {
		reply(w, nil, err)
		return
	}
	op, _ = s.ops.Get(op.ID)
	reply(w, op, nil)
}

// checkOpID is the rule for operation ids: 128 bits in lowercase hex.
func checkOpID(s string) error {
	if len(s) != 32 || strings.Trim(s, "0123456789abcdef") != "" {
		return fmt.Errorf("%q is not a valid operation id (32 hex digits)", s)
	}
	return nil
}

// opFunc is a long verb on the domain of the request's path ("" for the
// verbs that make one from a file), with its decoded body.
type opFunc[In any] func(ctx context.Context, name string, in In, progress func(api.JobProgress)) (any, error)

// operation adapts a long verb: the body is decoded at once (a bad one
// is a 400 here), then the verb runs as an operation of kind.
func operation[In any](s *Server, kind string, fn opFunc[In]) http.HandlerFunc {
	return checkedOperation(s, kind, nil, fn)
}

// checkedOperation is operation with check run on the decoded body
// first (what the caller may name: a 4xx at once, nothing started).
func checkedOperation[In any](s *Server, kind string, check func(*http.Request, *In) error, fn opFunc[In]) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in In
		if err := decode(r, &in); err != nil {
			reply(w, nil, err)
			return
		}
		if check != nil {
			if err := check(r, &in); err != nil {
				reply(w, nil, err)
				return
			}
		}
		name := r.PathValue("name")
		s.startOp(w, r, kind, name, s.opTenant(r, name), func(ctx context.Context, progress func(api.JobProgress)) (any, error) {
			return fn(ctx, name, in, progress)
		})
	}
}

// opTenant is whose an operation is, for who may see it: the tenant of
// the domain it acts on, else the caller's.
func (s *Server) opTenant(r *http.Request, name string) string {
	if name != "" && s.owners != nil {
		if t, _, err := s.owners.owner("domain", name); err == nil {
			return t
		}
	}
	return principalOf(r.Context()).Tenant
}

// opEvents publishes an operation's start, progress (at most once a
// second) and end on the event stream.
type opEvents struct {
	s                        *Server
	p                        auth.Principal
	id, kind, domain, tenant string
	last                     time.Time
}

func (e *opEvents) publish(action, detail string) {
	if e.s.bus == nil {
		return
	}
	d := e.kind + " " + e.id
	if detail != "" {
		d += ": " + detail
	}
	e.s.bus.Publish(api.Event{Type: api.EventOperation, Action: action, Domain: e.domain, Tenant: e.tenant,
		Actor: &api.Actor{Name: e.p.Name, Kind: string(e.p.Kind), Role: string(e.p.Role), Remote: e.p.Remote}, Detail: d})
}

// progress passes each report on and publishes one a second.
func (e *opEvents) progress(next func(api.JobProgress)) func(api.JobProgress) {
	return func(jp api.JobProgress) {
		next(jp)
		if time.Since(e.last) >= time.Second {
			e.last = time.Now()
			e.publish("progress", fmt.Sprintf("%s %d/%d", jp.Phase, jp.Done, jp.Total))
		}
	}
}

// ended is how a failed operation ended: cancelled or failed.
func ended(ctx context.Context, err error) string {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return "cancelled"
	}
	return "failure"
}

// startOp runs fn as an operation for the request's principal (who it
// runs as, in its context, for the layers that record who asked), under
// the daemon's lifetime rather than the request's, and answers 202
// Accepted with its Location and the operation. tenant is whose it is
// (its tenant's principals see it).
func (s *Server) startOp(w http.ResponseWriter, r *http.Request, kind, name, tenant string, fn operations.Func) bool {
	p := principalOf(r.Context())
	// How it ended is audited too (the call's own record says 202); the
	// ID is handed in once Start has made it.
	idc := make(chan string, 1)
	op, err := s.ops.Start(operations.Meta{Kind: kind, Domain: name, Owner: p.Name, Tenant: tenant}, func(ctx context.Context, progress func(api.JobProgress)) (any, error) {
		id := <-idc
		ev := opEvents{s: s, p: p, id: id, kind: kind, domain: name, tenant: tenant}
		ev.publish("started", "")
		out, err := fn(auth.NewContext(ctx, p), ev.progress(progress))
		code := http.StatusOK
		if err != nil {
			code, _ = api.StatusOf(err)
			ev.publish(ended(ctx, err), err.Error())
		} else {
			ev.publish("success", "")
		}
		s.auditCall(r, code, id, name)
		return out, err
	})
	if err == nil {
		idc <- op.ID
	}
	if err != nil {
		reply(w, nil, err)
		return false
	}
	w.Header().Set("Location", api.Version+"/operations/"+op.ID)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(op)
	return true
}

// createDomain validates the spec at once (a dry run: a bad spec is a
// 400 here, and a dry run is the whole answer), then creates the domain
// as an operation.
func (s *Server) createDomain(w http.ResponseWriter, r *http.Request) {
	var req api.CreateRequest
	if err := decode(r, &req); err != nil {
		reply(w, nil, err)
		return
	}
	var err error
	if req.Tenant, err = s.ownerFor(r, req.Tenant); err != nil {
		reply(w, nil, err)
		return
	}
	dry := req
	dry.DryRun = true
	var out any
	if req.DryRun || !s.imageElsewhere(r.Context(), req) {
		// (an image this host lacks: the host chosen checks it all)
		out, err = s.mgr.Create(r.Context(), dry)
	}
	if err == nil {
		err = s.cluster.Claim(r.Context(), req.Spec.Name)
	}
	if err == nil {
		err = s.createHA(r.Context(), req, out)
	}
	if err != nil || req.DryRun {
		reply(w, out, err)
		return
	}
	if s.placeCreate(w, r, req, out) {
		return
	}
	s.startOp(w, r, "create", req.Spec.Name, req.Tenant, func(ctx context.Context, _ func(api.JobProgress)) (any, error) {
		return s.mgr.Create(ctx, req)
	})
}

// shutdown is synchronous unless the caller waits for the guest to go
// (-w): that is an operation.
func (s *Server) shutdown(w http.ResponseWriter, r *http.Request) {
	var req api.ShutdownRequest
	if err := decode(r, &req); err != nil {
		reply(w, nil, err)
		return
	}
	name := r.PathValue("name")
	if !req.Wait {
		out, err := s.domainView(name, s.mgr.Shutdown(r.Context(), name, req))
		reply(w, out, err)
		return
	}
	s.startOp(w, r, "shutdown", name, s.opTenant(r, name), func(ctx context.Context, _ func(api.JobProgress)) (any, error) {
		return s.domainView(name, s.mgr.Shutdown(ctx, name, req))
	})
}

// hostShutdown ends (or saves) every domain before the host goes down,
// as an operation; a save dir the disk policy refuses is a 400 at once.
func (s *Server) hostShutdown(w http.ResponseWriter, r *http.Request) {
	var req api.HostShutdownRequest
	if err := decode(r, &req); err != nil {
		reply(w, nil, err)
		return
	}
	if req.SaveDir != "" {
		if err := s.pools.Policy.Check(storage.UseNew, filepath.Join(req.SaveDir, "x.save")); err != nil {
			reply(w, nil, err)
			return
		}
	}
	s.startOp(w, r, "host-shutdown", "", "", func(ctx context.Context, _ func(api.JobProgress)) (any, error) {
		res := s.mgr.HostShutdown(ctx, req)
		s.log.Info("host shutdown: every domain ended", "domains", len(res.Domains))
		return res, nil
	})
}

// longDomainRoutes: the long verbs on a domain and the ones that make a
// domain from a file, each an operation.
func (s *Server) longDomainRoutes() []route {
	d := domainPath
	return []route{
		{"POST", "/domains", auth.DomainCreate, s.createDomain},
		{"POST", d + "/shutdown", auth.DomainOperate, s.shutdown},
		{"POST", d + "/save", auth.DomainOperate, checkedOperation(s, "save", func(r *http.Request, req *api.SaveRequest) error {
			return s.tenantPath(r, "save file", req.Path, true)
		}, func(ctx context.Context, name string, req api.SaveRequest, progress func(api.JobProgress)) (any, error) {
			return s.domainView(name, s.mgr.Save(domain.WithProgress(ctx, progress), name, req.Path, req.Checkpoint))
		})},
		{"POST", d + "/clone", auth.DomainCreate, checkedOperation(s, "clone", func(r *http.Request, req *api.CloneRequest) (err error) {
			if req.Tenant != "" {
				req.Tenant, err = s.ownerFor(r, req.Tenant)
			}
			return err
		}, func(ctx context.Context, name string, req api.CloneRequest, _ func(api.JobProgress)) (any, error) {
			return s.mgr.Clone(ctx, name, req.Name, domain.CloneOptions{Paused: req.Paused, Vifs: req.Vifs, Set: req.Set, Tenant: req.Tenant})
		})},
		{"POST", "/restore", auth.DomainCreate, checkedOperation(s, "restore", func(r *http.Request, req *api.RestoreRequest) error {
			return s.tenantPath(r, "save file", req.Path, false)
		}, func(ctx context.Context, _ string, req api.RestoreRequest, progress func(api.JobProgress)) (any, error) {
			return s.mgr.Restore(domain.WithProgress(ctx, progress), req.Path, req.Paused, principalOf(ctx).Tenant)
		})},
		{"POST", d + "/export", auth.DomainOperate, checkedOperation(s, "export", func(r *http.Request, req *api.ExportRequest) error {
			return s.tenantPath(r, "archive", req.Path, true)
		}, func(ctx context.Context, name string, req api.ExportRequest, progress func(api.JobProgress)) (any, error) {
			return s.mgr.Export(ctx, name, req.Path, progress)
		})},
		{"POST", "/import", auth.DomainCreate, checkedOperation(s, "import", s.checkImport, func(ctx context.Context, _ string, req api.ImportRequest, progress func(api.JobProgress)) (any, error) {
			return s.mgr.Import(ctx, req, progress)
		})},
		{"POST", d + "/snapshots", auth.DomainOperate, operation(s, "snapshot", func(ctx context.Context, name string, req api.SnapshotRequest, progress func(api.JobProgress)) (any, error) {
			return s.mgr.SnapshotCreate(domain.WithProgress(ctx, progress), name, req.Name, req.Memory)
		})},
		{"POST", d + "/snapshots/{snap}/revert", auth.DomainOperate, s.revertSnapshot},
	}
}

// revertSnapshot returns a domain to a snapshot, as an operation.
func (s *Server) revertSnapshot(w http.ResponseWriter, r *http.Request) {
	if err := decode(r, &struct{}{}); err != nil {
		reply(w, nil, err)
		return
	}
	name, snap := r.PathValue("name"), r.PathValue("snap")
	s.startOp(w, r, "snapshot-revert", name, s.opTenant(r, name), func(ctx context.Context, _ func(api.JobProgress)) (any, error) {
		return s.mgr.SnapshotRevert(ctx, name, snap)
	})
}
