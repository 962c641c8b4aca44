package daemon

import (
	"net/http"

	"github.com/ringfence/ringfence/internal/api"
)

// storageRoutes are pools and volumes (internal/storage owns them).
func (s *Server) storageRoutes(mux *http.ServeMux) {
	p := api.Version
	mux.HandleFunc("GET "+p+"/pools", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.pools.List(r.Context())
		reply(w, out, err)
	})
	mux.HandleFunc("POST "+p+"/pools", func(w http.ResponseWriter, r *http.Request) {
		var req api.Pool
		if err := decode(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		out, err := s.pools.Create(r.Context(), req)
		reply(w, out, err)
	})
	mux.HandleFunc("DELETE "+p+"/pools/{pool}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, s.pools.Delete(r.Context(), r.PathValue("pool")))
	})
	mux.HandleFunc("GET "+p+"/pools/{pool}/volumes", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.pools.Volumes(r.Context(), r.PathValue("pool"))
		reply(w, out, err)
	})
	mux.HandleFunc("POST "+p+"/pools/{pool}/volumes", func(w http.ResponseWriter, r *http.Request) {
		var req api.VolumeRequest
		if err := decode(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		out, err := s.pools.CreateVolume(r.Context(), r.PathValue("pool"), req)
		reply(w, out, err)
	})
	mux.HandleFunc("PUT "+p+"/pools/{pool}/volumes/{vol}", func(w http.ResponseWriter, r *http.Request) {
		var req api.VolumeRequest
		if err := decode(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		out, err := s.pools.ResizeVolume(r.Context(), r.PathValue("pool"), r.PathValue("vol"), req.SizeB)
		reply(w, out, err)
	})
	mux.HandleFunc("DELETE "+p+"/pools/{pool}/volumes/{vol}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, s.pools.DeleteVolume(r.Context(), r.PathValue("pool"), r.PathValue("vol")))
	})
}

// snapshotRoutes are a domain's snapshots; they outlive the domain's
// record (a disk-only snapshot is reverted while no domain runs).
func (s *Server) snapshotRoutes(mux *http.ServeMux) {
	p := api.Version
	mux.HandleFunc("GET "+p+"/domains/{name}/snapshots", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.mgr.SnapshotList(r.Context(), r.PathValue("name"))
		reply(w, out, err)
	})
	mux.HandleFunc("POST "+p+"/domains/{name}/snapshots", func(w http.ResponseWriter, r *http.Request) {
		var req api.SnapshotRequest
		if err := decode(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		out, err := s.mgr.SnapshotCreate(r.Context(), r.PathValue("name"), req.Name, req.Memory)
		reply(w, out, err)
	})
	mux.HandleFunc("POST "+p+"/domains/{name}/snapshots/{snap}/revert", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.mgr.SnapshotRevert(r.Context(), r.PathValue("name"), r.PathValue("snap"))
		reply(w, out, err)
	})
	mux.HandleFunc("DELETE "+p+"/domains/{name}/snapshots/{snap}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, s.mgr.SnapshotDelete(r.Context(), r.PathValue("name"), r.PathValue("snap")))
	})
}
