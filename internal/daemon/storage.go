package daemon

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

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

// blockRoutes: what the running VM has in its disk slots.
func (s *Server) blockRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+api.Version+"/domains/{name}/blocks", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.mgr.BlockList(r.Context(), r.PathValue("name"))
		reply(w, out, err)
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

// jobRoutes are the long operations that stream progress.
func (s *Server) jobRoutes(mux *http.ServeMux) {
	p := api.Version
	mux.HandleFunc("POST "+p+"/domains/{name}/export", func(w http.ResponseWriter, r *http.Request) {
		var req api.ExportRequest
		if err := decode(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		stream(w, func(progress func(api.JobProgress)) (any, error) {
			return s.mgr.Export(r.Context(), r.PathValue("name"), req.Path, progress)
		})
	})
	mux.HandleFunc("POST "+p+"/import", func(w http.ResponseWriter, r *http.Request) {
		var req api.ImportRequest
		if err := decode(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		stream(w, func(progress func(api.JobProgress)) (any, error) {
			return s.mgr.Import(r.Context(), req.Path, req.Dir, req.Name, progress)
		})
	})
}

// stream runs fn, sending its progress (at most every 200 ms) and then
// its result or error as JSON lines.
func stream(w http.ResponseWriter, fn func(func(api.JobProgress)) (any, error)) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	fl, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	var mu sync.Mutex
	send := func(ev api.JobEvent) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(ev)
		if fl != nil {
			fl.Flush()
		}
	}
	var last time.Time
	out, err := fn(func(p api.JobProgress) {
		if time.Since(last) < 200*time.Millisecond {
			return
		}
		last = time.Now()
		send(api.JobEvent{Progress: &p})
	})
	if err != nil {
		_, class := api.StatusOf(err)
		send(api.JobEvent{Error: err.Error(), Class: class})
		return
	}
	b, _ := json.Marshal(out)
	send(api.JobEvent{Result: b})
}
