package daemon

import (
	"net/http"

	"github.com/ringfence/ringfence/internal/api"
)

// networkRoutes are the managed networks (internal/netmgr owns them).
func (s *Server) networkRoutes(mux *http.ServeMux) {
	p := api.Version
	mux.HandleFunc("GET "+p+"/networks", func(w http.ResponseWriter, r *http.Request) {
		reply(w, s.nets.List(), nil)
	})
	mux.HandleFunc("POST "+p+"/networks", func(w http.ResponseWriter, r *http.Request) {
		var req api.Network
		if err := decode(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		out, err := s.nets.Create(r.Context(), req)
		reply(w, out, err)
	})
	mux.HandleFunc("GET "+p+"/networks/{name}", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.nets.Get(r.PathValue("name"))
		reply(w, out, err)
	})
	mux.HandleFunc("GET "+p+"/networks/{name}/leases", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.nets.Leases(r.PathValue("name"))
		reply(w, out, err)
	})
	mux.HandleFunc("GET "+p+"/domains/{name}/vifs", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.mgr.NetworkList(r.PathValue("name"))
		reply(w, out, err)
	})
	mux.HandleFunc("DELETE "+p+"/networks/{name}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, s.nets.Delete(r.Context(), r.PathValue("name")))
	})
}
