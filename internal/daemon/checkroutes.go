package daemon

import (
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/config"
)

// checkRoutes: what a client can ask the daemon to look at without
// changing anything: a domain file checked as `config check` checks it
// (the web admin's live check), and a domain's recent figures (graphs).
func (s *Server) checkRoutes() []route {
	return []route{
		{"POST", "/config/check", auth.DomainRead, handle(func(_ *http.Request, req api.ConfigCheckRequest) (any, error) {
			return checkConfig(req), nil
		})},
		// The domain's xl.cfg as `config export` writes it.
		{"GET", domainPath + "/config", auth.DomainRead, func(w http.ResponseWriter, r *http.Request) {
			d, err := s.mgr.Get(r.PathValue("name"))
			if err != nil {
				reply(w, nil, err)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, config.Format(d.Spec.Shown()))
		}},
		{"GET", domainPath + "/history", auth.DomainRead, func(w http.ResponseWriter, r *http.Request) {
			var since int64
			if v := r.URL.Query().Get("since"); v != "" {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 0 {
					reply(w, nil, api.Errorf(api.ErrInvalid, "since=%q: want unix seconds (0: everything kept)", v))
					return
				}
				since = n
			}
			out, err := s.mgr.History(r.PathValue("name"), since)
			reply(w, out, err)
		}},
	}
}

// checkConfig decodes a file's text with the same decoder and the same
// diagnostics as `config check`.
func checkConfig(req api.ConfigCheckRequest) config.Report {
	// The name only labels the diagnostics: a base name, printable.
	file := filepath.Base(req.File)
	if req.File == "" || len(file) > 128 || strings.IndexFunc(file, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
		file = "domain.cfg"
	}
	spec, warns, err := config.DecodeWith(file, []byte(req.Text), config.Options{Strict: req.Strict})
	out := config.NewReport(file, spec, warns, err)
	if err == nil {
		out.Summary = config.Summary(spec)
	}
	return out
}
