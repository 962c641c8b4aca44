package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
)

// Export and import for callers on another machine (the remote API): the
// archive travels in the HTTP body instead of being a file on the
// daemon's host. Both go through a scratch file of the daemon's own in
// STATE/imports (a place the disk policy admits, 0600, random name,
// removed afterwards), so the archive is checked as a file-based one is.

// archiveRoutes: an export streamed to the caller, an import uploaded.
func (s *Server) archiveRoutes() []route {
	return []route{
		{"GET", domainPath + "/export/archive", auth.DomainOperate, s.exportDownload},
		{"POST", "/import/archive", auth.DomainCreate, s.importUpload},
	}
}

// uploads are the routes whose body is not capped at maxBody (an archive).
var uploads = map[string]bool{"POST /import/archive": true}

// streamIdle is how long an archive's transfer may stall, either way.
const streamIdle = 30 * time.Second

// scratchArchive is a new name for a scratch archive in STATE/imports.
func (s *Server) scratchArchive(what string) (string, error) {
	dir, err := filepath.Abs(filepath.Join(s.cfg.StateDir, "imports"))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	var b [12]byte
	rand.Read(b[:])
	return filepath.Join(dir, "."+what+"-"+hex.EncodeToString(b[:])+".tar.zst"), nil
}

// exportDownload exports a domain and sends the archive as the body
// (Content-Length set; X-Ringfence-Input-Bytes: what it holds, before
// compression). An error before the first byte is an ordinary error reply.
func (s *Server) exportDownload(w http.ResponseWriter, r *http.Request) {
	path, err := s.scratchArchive("export")
	if err != nil {
		reply(w, nil, err)
		return
	}
	defer os.Remove(path)
	res, err := s.mgr.Export(r.Context(), r.PathValue("name"), path, func(api.JobProgress) {})
	if err != nil {
		reply(w, nil, err)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		reply(w, nil, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(res.Bytes, 10))
	w.Header().Set("X-Ringfence-Input-Bytes", strconv.FormatInt(res.InputBytes, 10))
	rc := http.NewResponseController(w)
	io.Copy(writerFunc(func(p []byte) (int, error) {
		rc.SetWriteDeadline(time.Now().Add(streamIdle))
		return w.Write(p)
	}), f)
}

// importUpload takes an archive as the body (the query says dir, name,
// no_start, paused as api.ImportRequest does) and imports it, replying
// with the progress stream of POST /import.
func (s *Server) importUpload(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := api.ImportRequest{Dir: q.Get("dir"), Name: q.Get("name"), NoStart: q.Get("no_start") == "1", Paused: q.Get("paused") == "1", Tenant: q.Get("tenant")}
	if err := s.checkImport(r, &req); err != nil {
		reply(w, nil, err)
		return
	}
	path, err := s.scratchArchive("upload")
	if err != nil {
		reply(w, nil, err)
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		reply(w, nil, err)
		return
	}
	started := false
	defer func() {
		if !started {
			os.Remove(path)
		}
	}()
	// The whole-request deadline would cut a large archive: each read
	// gets streamIdle instead.
	rc := http.NewResponseController(w)
	_, err = io.Copy(f, readerFunc(func(p []byte) (int, error) {
		rc.SetReadDeadline(time.Now().Add(streamIdle))
		return r.Body.Read(p)
	}))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		reply(w, nil, api.Errorf(api.ErrInvalid, "receiving the archive: %v", err))
		return
	}
	req.Path = path
	// Once started, the operation removes the upload when it ends.
	started = s.startOp(w, r, "import", req.Name, req.Tenant, func(ctx context.Context, progress func(api.JobProgress)) (any, error) {
		defer os.Remove(path)
		return s.mgr.Import(ctx, req, progress)
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
