package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/domain"
	"github.com/ringfence/ringfence/internal/storage"
)

// Files whose content a remote client supplies or receives travel in the
// HTTP body, never as a file the client names on the daemon's host: an
// export and a save image are streamed to the client as they are made
// (no archive or image is kept here), an archive to import and a save
// image to restore are uploaded, capped (Config.MaxUpload) and checked
// against the free space first, into a scratch file that has no name
// (storage.ScratchFile: gone when closed, even if the daemon dies).

// transferRoutes: an export and a save streamed to the caller, an import
// and a restore uploaded.
func (s *Server) transferRoutes() []route {
	return []route{
		{"GET", domainPath + "/export/archive", auth.DomainOperate, s.exportDownload},
		{"POST", "/import/archive", auth.DomainCreate, s.importUpload},
		{"POST", domainPath + "/save/image", auth.DomainOperate, s.saveDownload},
		{"POST", domainPath + "/save/confirm", auth.DomainOperate, handle(s.saveConfirm)},
		{"POST", "/restore/image", auth.DomainCreate, s.restoreUpload},
	}
}

// uploads are the routes whose body is not capped at maxBody: theirs is
// capped by receive.
var uploads = map[string]bool{"POST /import/archive": true, "POST /restore/image": true}

// streamIdle is how long a transfer may stall, either way.
const streamIdle = 30 * time.Second

// scratchDir is where uploads and an export's disk copies are held
// (STATE/imports, which the disk policy admits).
func (s *Server) scratchDir() (string, error) {
	dir, err := filepath.Abs(filepath.Join(s.cfg.StateDir, "imports"))
	if err == nil {
		err = os.MkdirAll(dir, 0o700)
	}
	return dir, err
}

func (s *Server) maxUpload() int64 {
	if s.cfg.MaxUpload > 0 {
		return s.cfg.MaxUpload
	}
	return DefaultMaxUpload
}

// receive takes the request's body (what it is: "archive", "save image")
// into a scratch file with no name, rewound. An upload over the cap is
// 413 (at once when its Content-Length says so); one the free space
// cannot hold is 507 before a byte is written; a client that goes away
// or stalls leaves nothing.
func (s *Server) receive(w http.ResponseWriter, r *http.Request, what string) (*os.File, error) {
	limit := s.maxUpload()
	tooBig := api.Errorf(api.ErrTooLarge, "the %s is over this daemon's upload limit of %d bytes (%s; serve --max-upload)", what, limit, sizeText(limit))
	if r.ContentLength > limit {
		return nil, tooBig
	}
	dir, err := s.scratchDir()
	if err != nil {
		return nil, err
	}
	if free, err := storage.FreeBytes(dir); err == nil && r.ContentLength > free {
		return nil, api.Errorf(api.ErrInsufficient, "the %s is %s; %s has %s free: free space there first", what, sizeText(r.ContentLength), dir, sizeText(free))
	}
	f, err := storage.ScratchFile(dir)
	if err != nil {
		return nil, err
	}
	// The whole-request deadline would cut a large upload: each read
	// gets streamIdle instead.
	rc := http.NewResponseController(w)
	body := http.MaxBytesReader(w, r.Body, limit)
	_, err = io.Copy(f, readerFunc(func(p []byte) (int, error) {
		rc.SetReadDeadline(time.Now().Add(streamIdle))
		return body.Read(p)
	}))
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, tooBig
		}
		return nil, api.Errorf(api.ErrInvalid, "receiving the %s: %v (nothing was kept)", what, err)
	}
	return f, nil
}

// sizeText is bytes for people: 1.5 GiB.
func sizeText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	d, e := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		d *= unit
		e++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(d), "KMGTPE"[e])
}

// exportDownload exports a domain straight into the response body: the
// archive is never a file here. An error before the first byte is an
// ordinary error reply; one after it cuts the stream (the client sees a
// broken transfer, never a short archive that looks whole).
func (s *Server) exportDownload(w http.ResponseWriter, r *http.Request) {
	dir, err := s.scratchDir()
	if err != nil {
		reply(w, nil, err)
		return
	}
	body := newStreamBody(w, nil)
	_, err = s.mgr.ExportTo(r.Context(), r.PathValue("name"), body, dir, func(api.JobProgress) {})
	body.end(err)
}

// importUpload takes an archive as the body (the query says dir, name,
// no_start, paused, tenant as api.ImportRequest does) and imports it as an
// operation, which closes the upload (giving its space back) when it ends.
func (s *Server) importUpload(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := api.ImportRequest{Dir: q.Get("dir"), Name: q.Get("name"), NoStart: q.Get("no_start") == "1", Paused: q.Get("paused") == "1", Tenant: q.Get("tenant")}
	// Whose it is and where it may go are checked before a byte is taken.
	if err := s.checkImport(r, &req); err != nil {
		reply(w, nil, err)
		return
	}
	f, err := s.receive(w, r, "archive")
	if err != nil {
		reply(w, nil, err)
		return
	}
	if !s.startOp(w, r, "import", req.Name, req.Tenant, func(ctx context.Context, progress func(api.JobProgress)) (any, error) {
		defer f.Close()
		return s.mgr.ImportFrom(ctx, f, req, progress)
	}) {
		f.Close()
	}
}

// restoreUpload takes a save image as the body (?paused=1 leaves the
// domain paused) and restores it as an operation.
func (s *Server) restoreUpload(w http.ResponseWriter, r *http.Request) {
	paused := r.URL.Query().Get("paused") == "1"
	f, err := s.receive(w, r, "save image")
	if err != nil {
		reply(w, nil, err)
		return
	}
	if !s.startOp(w, r, "restore", "", s.opTenant(r, ""), func(ctx context.Context, progress func(api.JobProgress)) (any, error) {
		defer f.Close()
		return s.mgr.RestoreFrom(domain.WithProgress(ctx, progress), f, "the uploaded save image", paused, principalOf(ctx).Tenant)
	}) {
		f.Close()
	}
}

// streamBody is a response body sent as it is made: the status and
// headers go with the first byte, each write may stall streamIdle.
type streamBody struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	header  func(http.Header)
	started bool
}

func newStreamBody(w http.ResponseWriter, header func(http.Header)) *streamBody {
	return &streamBody{w: w, rc: http.NewResponseController(w), header: header}
}

func (b *streamBody) Write(p []byte) (int, error) {
	if !b.started {
		b.started = true
		b.w.Header().Set("Content-Type", "application/octet-stream")
		if b.header != nil {
			b.header(b.w.Header())
		}
		b.w.WriteHeader(http.StatusOK)
	}
	b.rc.SetWriteDeadline(time.Now().Add(streamIdle))
	return b.w.Write(p)
}

// end ends the body after err: an error reply when nothing was sent, a
// cut connection when some was.
func (b *streamBody) end(err error) {
	switch {
	case err == nil:
	case !b.started:
		reply(b.w, nil, err)
	default:
		panic(http.ErrAbortHandler)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
