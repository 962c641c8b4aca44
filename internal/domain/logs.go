package domain

import (
	"os"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// Log returns a domain's log (which: "console" or "qemu"), its last max
// bytes; it works for a domain that is gone too (its logs are kept).
func (m *Manager) Log(name, which string, max int) ([]byte, error) {
	file := map[string]string{"console": "console.log", "qemu": "qemu.log"}[which]
	if file == "" {
		return nil, api.Errorf(api.ErrInvalid, "log %q: console or qemu", which)
	}
	b, err := os.ReadFile(filepath.Join(m.o.LogDir, name, file))
	if os.IsNotExist(err) {
		return nil, api.Errorf(api.ErrNotFound, "no %s log for %q in %s (never ran here, or pruned after %s)", which, name, m.o.LogDir, m.retention())
	}
	if err != nil {
		return nil, err
	}
	if max > 0 && len(b) > max {
		b = b[len(b)-max:]
	}
	return b, nil
}

func (m *Manager) retention() time.Duration {
	if m.o.LogRetention > 0 {
		return m.o.LogRetention
	}
	return 30 * 24 * time.Hour
}

// pruneLogs removes the logs of domains that are gone and have not
// logged for the retention time.
func (m *Manager) pruneLogs() {
	ents, err := os.ReadDir(m.o.LogDir)
	if err != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range ents {
		if _, live := m.doms[e.Name()]; live || !e.IsDir() {
			continue
		}
		dir := filepath.Join(m.o.LogDir, e.Name())
		newest := time.Time{}
		files, _ := os.ReadDir(dir)
		for _, f := range files {
			if fi, err := f.Info(); err == nil && fi.ModTime().After(newest) {
				newest = fi.ModTime()
			}
		}
		if time.Since(newest) > m.retention() {
			os.RemoveAll(dir)
			m.o.Log.Info("pruned the logs of a domain that is gone", "name", e.Name(), "last_written", newest)
		}
	}
}
