package daemon

import (
	"net/http"
	"os"
	"strconv"
	"sync"
)

// logSink is where the daemon's own log goes: a file (reopened on SIGHUP,
// so logrotate can move it) or stderr (journald under systemd), with the
// last 256 KiB kept in memory for `ringfence dmesg`.
type logSink struct {
	mu   sync.Mutex
	path string
	f    *os.File
	ring []byte
}

const ringMax = 256 << 10

func newLogSink(path string) (*logSink, error) {
	l := &logSink{path: path, f: os.Stderr}
	return l, l.Reopen()
}

// Reopen opens the log file again (after logrotate moved it).
func (l *logSink) Reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != os.Stderr {
		old.Close()
	}
	return nil
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ring = append(l.ring, p...)
	if len(l.ring) > ringMax {
		l.ring = append([]byte(nil), l.ring[len(l.ring)-ringMax/2:]...)
	}
	return l.f.Write(p)
}

// Bytes is the recent log.
func (l *logSink) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.ring...)
}

// domainLog serves a domain's console or QEMU log (kept after it is gone).
func (s *Server) domainLog(w http.ResponseWriter, r *http.Request) {
	which := r.URL.Query().Get("file")
	if which == "" {
		which = "console"
	}
	max, _ := strconv.Atoi(r.URL.Query().Get("tail"))
	b, err := s.mgr.Log(r.PathValue("name"), which, max)
	if err != nil {
		reply(w, nil, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(b)
}
