package daemon

import (
	"context"
	"net/http"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
)

// xlRoutes: xl's remaining verbs on a domain: its vCPUs listed and
// hot-plugged, keys and platform events sent, a new name, and its memory
// dumped (an operation: a big guest takes a while). A tenant reaches
// only its own domains (the guard); a renamed domain keeps its tenant,
// and its new name is unique host-wide, as every domain name is.
func (s *Server) xlRoutes() []route {
	d := domainPath
	return []route{
		{"GET", d + "/vcpus", auth.DomainRead, func(w http.ResponseWriter, r *http.Request) {
			out, err := s.mgr.VCPUList(r.PathValue("name"))
			reply(w, out, err)
		}},
		{"POST", d + "/vcpu-set", auth.DomainConfig, domainAction(s, func(r *http.Request, name string, req api.VCPUSetRequest) error {
			return s.mgr.VCPUSet(r.Context(), name, req.VCPUs)
		})},
		{"POST", d + "/sysrq", auth.DomainOperate, domainAction(s, func(r *http.Request, name string, req api.SysRqRequest) error {
			return s.mgr.SysRq(r.Context(), name, req.Key)
		})},
		{"POST", d + "/trigger", auth.DomainOperate, domainAction(s, func(r *http.Request, name string, req api.TriggerRequest) error {
			return s.mgr.Trigger(r.Context(), name, req.Event)
		})},
		{"POST", d + "/rename", auth.DomainCreate, handle(func(r *http.Request, req api.RenameRequest) (any, error) {
			err := s.mgr.Rename(r.Context(), r.PathValue("name"), req.Name)
			return s.domainView(req.Name, err)
		})},
		// A tenant's core file goes into one of its pools, as a save file.
		{"POST", d + "/dump-core", auth.DomainOperate, checkedOperation(s, "dump-core", func(r *http.Request, req *api.DumpCoreRequest) error {
			return s.tenantPath(r, "core file", req.Path, true)
		}, func(ctx context.Context, name string, req api.DumpCoreRequest, progress func(api.JobProgress)) (any, error) {
			return s.mgr.DumpCore(ctx, name, req.Path, progress)
		})},
	}
}
