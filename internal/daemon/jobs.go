package daemon

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// export writes a domain to an archive, streaming progress.
func (s *Server) export(w http.ResponseWriter, r *http.Request) {
	var req api.ExportRequest
	if err := decode(r, &req); err != nil {
		reply(w, nil, err)
		return
	}
	stream(w, func(progress func(api.JobProgress)) (any, error) {
		return s.mgr.Export(r.Context(), r.PathValue("name"), req.Path, progress)
	})
}

// importArchive creates a domain from an archive, streaming progress.
func (s *Server) importArchive(w http.ResponseWriter, r *http.Request) {
	var req api.ImportRequest
	if err := decode(r, &req); err != nil {
		reply(w, nil, err)
		return
	}
	stream(w, func(progress func(api.JobProgress)) (any, error) {
		return s.mgr.Import(r.Context(), req, progress)
	})
}

// streamWriter writes JSON lines to a streamed reply, flushing each; a
// client that stops reading is cut off after 30 s instead of holding the
// handler (the job itself goes on).
func streamWriter(w http.ResponseWriter) func(v any) {
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	return func(v any) {
		rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		enc.Encode(v)
		rc.Flush()
	}
}

// stream runs fn, sending its progress (at most every 200 ms) and then
// its result or error as JSON lines.
func stream(w http.ResponseWriter, fn func(func(api.JobProgress)) (any, error)) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	var mu sync.Mutex
	sendLine := streamWriter(w)
	send := func(ev api.JobEvent) {
		mu.Lock()
		defer mu.Unlock()
		sendLine(ev)
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
