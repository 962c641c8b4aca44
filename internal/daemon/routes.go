package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"slices"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
)

// route is one row of the API: method and path (under /1.0), the
// permission it needs, and its handler. The table is the only way a
// handler is registered, so a route cannot exist without a rule
// (TestRouteTable walks every route with every role).
type route struct {
	method, path string
	perm         auth.Perm
	h            http.HandlerFunc
}

// domainPath is the path of one domain, under which its verbs are.
const domainPath = "/domains/{name}"

var paramRE = regexp.MustCompile(`\{([a-z]+)\}`)

// params are the path parameters of the route's pattern.
func (rt route) params() []string {
	var out []string
	for _, m := range paramRE.FindAllStringSubmatch(rt.path, -1) {
		out = append(out, m[1])
	}
	return out
}

// routes is the whole API, one table per area; every row names the
// permission it needs. The peer permissions appear only on the routes a
// peer host needs: migrating a domain here, and joining/renewing trust.
func (s *Server) routes() []route {
	var rs []route
	for _, area := range [][]route{
		s.hostRoutes(), s.definitionRoutes(), s.domainRoutes(), s.deviceRoutes(),
		s.snapshotRoutes(), s.migrateRoutes(), s.poolRoutes(), s.networkRoutes(), s.guestRoutes(),
		s.trustRoutes(), s.clusterRoutes(), s.memberRoutes(), s.observeRoutes(), s.tokenRoutes(), s.transferRoutes(),
		s.longDomainRoutes(), s.operationRoutes(),
		s.eventRoutes(), s.xlRoutes(), s.tenantRoutes(), s.usageRoutes(), s.checkRoutes(), s.haRoutes(),
	} {
		rs = append(rs, area...)
	}
	return rs
}

// hostRoutes: the host itself: what it is, its load, its log, and ending
// every domain before the host goes down.
func (s *Server) hostRoutes() []route {
	return []route{
		{"GET", "/host", auth.HostRead, s.hostInfo},
		// Per domain, so a tenant reads its own (DomainRead, filtered).
		{"GET", "/stats", auth.DomainRead, func(w http.ResponseWriter, r *http.Request) {
			reply(w, s.seenStats(principalOf(r.Context()), s.mgr.Stats()), nil)
		}},
		{"POST", "/host/shutdown", auth.HostManage, s.hostShutdown},
		{"GET", "/host/log", auth.HostRead, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write(s.logRing.Bytes())
		}},
	}
}

// definitionRoutes: the stored definitions of domains, the domains' logs.
func (s *Server) definitionRoutes() []route {
	return []route{
		{"POST", "/definitions", auth.DomainCreate, handle(func(r *http.Request, req api.DefineRequest) (any, error) {
			tenant, err := s.ownerFor(r, req.Tenant)
			if err != nil {
				return nil, err
			}
			if err := s.cluster.Claim(r.Context(), req.Spec.Name); err != nil {
				return nil, err
			}
			if req.Spec.HA {
				if err := s.admitHA(r.Context(), req.Spec, s.cluster.Name()); err != nil {
					return nil, err
				}
			}
			return s.mgr.Define(r.Context(), req.Spec, tenant)
		})},
		{"GET", "/definitions/{name}", auth.DomainRead, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.mgr.Definition(r.PathValue("name"))
			reply(w, out, err)
		}},
		{"PUT", "/definitions/{name}", auth.DomainCreate, handle(func(r *http.Request, req api.DefineRequest) (any, error) {
			if req.Spec.HA {
				if err := s.admitHA(r.Context(), req.Spec, s.cluster.Name()); err != nil {
					return nil, err
				}
			}
			return s.mgr.UpdateDefinition(r.Context(), r.PathValue("name"), req.Spec)
		})},
		{"DELETE", "/definitions/{name}", auth.DomainCreate, handle(func(r *http.Request, _ struct{}) (any, error) {
			return struct{}{}, s.mgr.Undefine(r.Context(), r.PathValue("name"))
		})},
		{"PUT", "/definitions/{name}/autostart", auth.DomainCreate, handle(func(r *http.Request, req api.Autostart) (any, error) {
			return s.mgr.SetAutostart(r.Context(), r.PathValue("name"), req)
		})},
		{"GET", "/logs/{name}", auth.DomainRead, s.domainLog},
	}
}

// domainRoutes: a domain's life: started, stopped, sized (made, saved,
// cloned and restored by longDomainRoutes, as operations).
func (s *Server) domainRoutes() []route {
	d := domainPath
	return []route{
		{"GET", "/domains", auth.DomainRead, func(w http.ResponseWriter, r *http.Request) {
			ds := s.mgr.List(r.URL.Query().Get("all") == "1")
			if principalOf(r.Context()).Tenant == "" {
				ds = s.clusterList(r.Context(), ds)
			}
			reply(w, seenDomains(principalOf(r.Context()), ds), nil)
		}},
		{"GET", d, auth.DomainRead, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.mgr.Get(r.PathValue("name"))
			reply(w, out, err)
		}},
		{"GET", d + "/console", auth.DomainConsole, s.console},
		{"GET", d + "/vnc", auth.DomainConsole, s.vnc},
		{"POST", d + "/start", auth.DomainOperate, handle(func(r *http.Request, req api.StartRequest) (any, error) {
			return s.mgr.Start(r.Context(), r.PathValue("name"), req.Paused)
		})},
		{"POST", d + "/reboot", auth.DomainOperate, domainAction(s, func(r *http.Request, name string, req api.ShutdownRequest) error {
			return s.mgr.Reboot(r.Context(), name, req)
		})},
		{"POST", d + "/reset", auth.DomainOperate, domainAction(s, func(r *http.Request, name string, _ struct{}) error { return s.mgr.Reset(r.Context(), name) })},
		{"POST", d + "/destroy", auth.DomainOperate, domainAction(s, func(r *http.Request, name string, _ struct{}) error { return s.mgr.Destroy(r.Context(), name) })},
		{"POST", d + "/pause", auth.DomainOperate, domainAction(s, func(r *http.Request, name string, _ struct{}) error { return s.mgr.Pause(r.Context(), name) })},
		{"POST", d + "/unpause", auth.DomainOperate, domainAction(s, func(r *http.Request, name string, _ struct{}) error { return s.mgr.Unpause(r.Context(), name) })},
		{"POST", d + "/mem-set", auth.DomainConfig, domainAction(s, func(r *http.Request, name string, req api.MemRequest) error {
			return s.mgr.MemSet(r.Context(), name, req.MemoryMiB)
		})},
		{"POST", d + "/mem-max", auth.DomainConfig, domainAction(s, func(r *http.Request, name string, req api.MemRequest) error {
			return s.mgr.MemMax(r.Context(), name, req.MemoryMiB)
		})},
		{"POST", d + "/sched-credit", auth.DomainConfig, s.schedCredit},
		{"POST", d + "/vcpu-pin", auth.DomainConfig, s.vcpuPin},
	}
}

// deviceRoutes: a domain's disks, media and network interfaces,
// hot-plugged or listed.
func (s *Server) deviceRoutes() []route {
	d := domainPath
	return []route{
		{"POST", d + "/block-attach", auth.DomainConfig, domainAction(s, func(r *http.Request, name string, req api.BlockRequest) error {
			_, err := s.mgr.BlockAttach(r.Context(), name, req.Spec)
			return err
		})},
		{"POST", d + "/block-detach", auth.DomainConfig, domainAction(s, func(r *http.Request, name string, req api.BlockRequest) error {
			return s.mgr.BlockDetach(r.Context(), name, req.VDev)
		})},
		{"POST", d + "/cd-insert", auth.DomainConfig, domainAction(s, func(r *http.Request, name string, req api.BlockRequest) error {
			if req.Path == "" {
				return api.Errorf(api.ErrInvalid, "cd-insert needs a file")
			}
			return s.mgr.CDChange(r.Context(), name, req.VDev, req.Path)
		})},
		{"POST", d + "/cd-eject", auth.DomainConfig, domainAction(s, func(r *http.Request, name string, req api.BlockRequest) error {
			return s.mgr.CDChange(r.Context(), name, req.VDev, "")
		})},
		{"POST", d + "/network-attach", auth.DomainConfig, domainAction(s, func(r *http.Request, name string, req api.NetworkRequest) error {
			_, err := s.mgr.NetworkAttach(r.Context(), name, req.Spec)
			return err
		})},
		{"POST", d + "/network-detach", auth.DomainConfig, domainAction(s, func(r *http.Request, name string, req api.NetworkRequest) error {
			return s.mgr.NetworkDetach(r.Context(), name, req.Dev)
		})},
		{"GET", d + "/blocks", auth.DomainRead, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.mgr.BlockList(r.Context(), r.PathValue("name"))
			reply(w, out, err)
		}},
		{"GET", d + "/vifs", auth.DomainRead, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.mgr.NetworkList(r.PathValue("name"))
			reply(w, out, err)
		}},
	}
}

// guestRoutes: the guest agent of a running domain. Reading what the
// guest says about itself is a read; running commands in it and setting
// its users' passwords reach inside it (domain.guest: not a tenant-user's).
func (s *Server) guestRoutes() []route {
	d := domainPath
	return []route{
		{"GET", d + "/guest", auth.DomainRead, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.mgr.GuestInfo(r.Context(), r.PathValue("name"))
			reply(w, out, err)
		}},
		{"POST", d + "/exec", auth.DomainGuest, handle(func(r *http.Request, req api.GuestExecRequest) (any, error) {
			return s.mgr.GuestExec(r.Context(), r.PathValue("name"), req)
		})},
		{"POST", d + "/password", auth.DomainGuest, handle(func(r *http.Request, req api.GuestPasswordRequest) (any, error) {
			return struct{}{}, s.mgr.SetGuestPassword(r.Context(), r.PathValue("name"), req)
		})},
	}
}

// snapshotRoutes: a domain's snapshots (taken and reverted, and its
// archive out and in, by longDomainRoutes, as operations).
func (s *Server) snapshotRoutes() []route {
	d := domainPath
	return []route{
		{"GET", d + "/snapshots", auth.DomainRead, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.mgr.SnapshotList(r.Context(), r.PathValue("name"))
			reply(w, out, err)
		}},
		{"DELETE", d + "/snapshots/{snap}", auth.DomainOperate, handle(func(r *http.Request, _ struct{}) (any, error) {
			return struct{}{}, s.mgr.SnapshotDelete(r.Context(), r.PathValue("name"), r.PathValue("snap"))
		})},
	}
}

// migrateRoutes: a domain leaving (the admin's verbs) and arriving: what
// a peer host may do here is migrate a domain in.
func (s *Server) migrateRoutes() []route {
	d := domainPath
	return []route{
		{"POST", d + "/migrate", auth.DomainMigrate, s.migrate},
		{"POST", d + "/migrate-cancel", auth.DomainMigrate, operation(s, "migrate-cancel", func(_ context.Context, name string, _ struct{}, _ func(api.JobProgress)) (any, error) {
			return s.domainView(name, s.mgr.CancelMigration(name))
		})},
		{"POST", "/migrate/incoming", auth.PeerMigrate, s.incoming},
		{"POST", "/migrate/data/{token}", auth.PeerMigrate, s.incomingData},
	}
}

// poolRoutes: storage pools and their volumes.
func (s *Server) poolRoutes() []route {
	return []route{
		{"GET", "/pools", auth.StorageRead, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.pools.List(r.Context())
			reply(w, seenPools(principalOf(r.Context()), out), err)
		}},
		{"POST", "/pools", auth.HostManage, handle(func(r *http.Request, req api.Pool) (any, error) {
			if _, err := s.ownerFor(r, req.Tenant); err != nil {
				return nil, err
			}
			return s.createPool(r.Context(), req)
		})},
		{"DELETE", "/pools/{pool}", auth.HostManage, handle(func(r *http.Request, _ struct{}) (any, error) {
			return struct{}{}, s.deletePool(r.Context(), r.PathValue("pool"))
		})},
		{"GET", "/pools/{pool}/volumes", auth.StorageRead, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.pools.Volumes(r.Context(), r.PathValue("pool"))
			reply(w, out, err)
		}},
		{"POST", "/pools/{pool}/volumes", auth.StorageManage, handle(func(r *http.Request, req api.VolumeRequest) (any, error) {
			return s.createVolume(r, r.PathValue("pool"), req)
		})},
		{"PUT", "/pools/{pool}/volumes/{vol}", auth.StorageManage, handle(func(r *http.Request, req api.VolumeRequest) (any, error) {
			return s.resizeVolume(r, r.PathValue("pool"), r.PathValue("vol"), req.SizeB)
		})},
		{"DELETE", "/pools/{pool}/volumes/{vol}", auth.StorageManage, handle(func(r *http.Request, _ struct{}) (any, error) {
			return struct{}{}, s.pools.DeleteVolume(r.Context(), r.PathValue("pool"), r.PathValue("vol"))
		})},
	}
}

// networkRoutes: managed networks and their DHCP leases.
func (s *Server) networkRoutes() []route {
	return []route{
		{"GET", "/networks", auth.NetworkRead, func(w http.ResponseWriter, r *http.Request) {
			reply(w, seenNetworks(principalOf(r.Context()), s.nets.List()), nil)
		}},
		{"POST", "/networks", auth.NetworkManage, handle(func(r *http.Request, req api.Network) (any, error) {
			if _, err := s.ownerFor(r, req.Tenant); err != nil {
				return nil, err
			}
			return s.createNetwork(r.Context(), req)
		})},
		{"GET", "/networks/{network}", auth.NetworkRead, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.nets.Get(r.PathValue("network"))
			reply(w, seenNetwork(principalOf(r.Context()), out), err)
		}},
		{"GET", "/networks/{network}/leases", auth.NetworkRead, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.nets.Leases(r.PathValue("network"))
			reply(w, s.seenLeases(principalOf(r.Context()), out), err)
		}},
		{"DELETE", "/networks/{network}", auth.NetworkManage, handle(func(r *http.Request, _ struct{}) (any, error) {
			return struct{}{}, s.deleteNetwork(r.Context(), r.PathValue("network"))
		})},
	}
}

// handler builds the mux for a listener whose callers hold one of roles:
// only the routes one of them may call are registered; every other
// request gets fallback (nil: the mux's own 404).
func (s *Server) handler(roles []auth.Role, fallback http.HandlerFunc) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		if slices.ContainsFunc(roles, func(r auth.Role) bool { return r.Can(rt.perm) }) {
			mux.HandleFunc(rt.method+" "+api.Version+rt.path, s.audited(rt, s.guard(rt)))
		}
	}
	if fallback != nil {
		mux.HandleFunc("/", fallback)
	}
	return canonical(mux)
}

// handle adapts fn (a request body of type In, a reply) to a handler.
func handle[In any](fn func(*http.Request, In) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in In
		if err := decode(r, &in); err != nil {
			reply(w, nil, err)
			return
		}
		out, err := fn(r, in)
		reply(w, out, err)
	}
}

// domainAction adapts a verb on a domain: its reply is the domain as it
// is afterwards ({"status":"gone"} once it no longer exists).
func domainAction[In any](s *Server, fn func(*http.Request, string, In) error) http.HandlerFunc {
	return handle(func(r *http.Request, in In) (any, error) {
		name := r.PathValue("name")
		return s.domainView(name, fn(r, name, in))
	})
}

// domainView is the reply after a verb on a domain: err, or the domain as
// it is now ({"status":"gone"} once it no longer exists).
func (s *Server) domainView(name string, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	d, err := s.mgr.Get(name)
	if errors.Is(err, api.ErrNotFound) {
		return map[string]string{"status": "gone"}, nil
	}
	return d, err
}

// decode reads a JSON body into v: unknown fields are an error (a typo
// must not be silently ignored), and a body over the cap answers 413.
func decode(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return api.Errorf(api.ErrTooLarge, "request body over %d bytes", tooBig.Limit)
		}
		return api.Errorf(api.ErrInvalid, "reading the request body: %v", err)
	}
	if len(body) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return api.Errorf(api.ErrInvalid, "request body: %v", err)
	}
	if dec.More() {
		return api.Errorf(api.ErrInvalid, "request body: more than one JSON value")
	}
	return nil
}

// reply writes v, or err as the error body with its status.
func reply(w http.ResponseWriter, v any, err error) { api.Reply(w, v, err) }

// RouteInfo is one API route and the permission it needs (for the docs
// and the end-to-end walk over a real listener).
type RouteInfo struct {
	Method, Path string // Path under /1.0, with {parameters}
	Perm         auth.Perm
}

// Routes lists the API.
func Routes() []RouteInfo {
	var out []RouteInfo
	for _, rt := range (&Server{}).routes() {
		out = append(out, RouteInfo{rt.method, rt.path, rt.perm})
	}
	return out
}
