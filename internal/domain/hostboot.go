package domain

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/config"
	"github.com/ringfence/ringfence/internal/store"
)

// What xendomains and libvirt-guests do for a host: at boot, the domain
// files in the auto dir are defined, what the last host shutdown saved is
// restored, and the domains marked autostart are started in order; at
// host shutdown every guest is shut down cleanly, or saved.

// keyRestore/NAME is a save file of a transient domain that a host
// shutdown saved, restored at the next boot.
const keyRestore = "restore/"

// BootPhase runs once, after Recover, when this daemon is the first since
// the host booted. It runs in the background: the API answers meanwhile.
func (m *Manager) BootPhase(ctx context.Context) {
	if !m.firstSinceBoot {
		return
	}
	m.defineAutoDir(ctx)
	restored := m.restoreSaved(ctx)
	m.autostart(ctx, restored)
	m.o.Log.Info("boot phase done")
}

// defineAutoDir defines (or updates) every *.cfg in the auto dir, the way
// /etc/xen/auto works: each is started at boot, in file-name order.
func (m *Manager) defineAutoDir(ctx context.Context) {
	if m.o.AutoDir == "" {
		return
	}
	files, _ := filepath.Glob(filepath.Join(m.o.AutoDir, "*.cfg"))
	sort.Strings(files)
	for i, f := range files {
		spec, _, err := config.Load(f)
		if err != nil {
			m.o.Log.Error("autostart file refused", "file", f, "err", err)
			continue
		}
		if _, err := m.get(spec.Name); err != nil {
			_, err = m.Define(ctx, spec, "") // the host's own files
		} else if d, _ := m.get(spec.Name); d != nil && m.isDefined(d) {
			_, err = m.UpdateDefinition(ctx, spec.Name, spec)
		}
		if err == nil {
			_, err = m.SetAutostart(ctx, spec.Name, api.Autostart{On: true, Order: 10 * (i + 1)})
		}
		if err != nil {
			m.o.Log.Error("autostart file", "file", f, "err", err)
		}
	}
}

func (m *Manager) isDefined(d *dom) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.def != nil
}

// restoreSaved restores what `shutdown --all --save` saved: defined
// domains through their definition, transient ones from the store's
// list. It returns the names restored.
func (m *Manager) restoreSaved(ctx context.Context) map[string]bool {
	done := map[string]bool{}
	m.mu.Lock()
	var all []*dom
	for _, d := range m.doms {
		all = append(all, d)
	}
	m.mu.Unlock()
	for _, d := range all {
		d.mu.Lock()
		if d.def != nil && d.def.Saved != "" && d.inst == nil {
			path, name := d.def.Saved, d.rec.Spec.Name
			err := m.restoreInto(ctx, d, path)
			d.def.Saved = ""
			if err != nil {
				// Said where list --all shows it; the file stays for the
				// admin (`ringfence restore FILE` once it is fixed).
				d.rec.LastReason = fmt.Sprintf("not restored from %s (saved at host shutdown; the file is kept): %v", path, err)
				d.def.LastStop.Reason = d.rec.LastReason
				m.view(d)
			}
			m.saveDef(ctx, name, d.def)
			if err != nil {
				m.o.Log.Error("restoring a domain saved at host shutdown", "name", name, "file", path, "err", err)
			} else {
				os.Remove(path)
				done[name] = true
				m.o.Log.Info("restored a domain saved at host shutdown", "name", name)
			}
		}
		d.mu.Unlock()
	}
	kvs, _ := m.o.Store.List(ctx, keyRestore)
	for _, kv := range kvs {
		name, path := strings.TrimPrefix(kv.Key, keyRestore), string(kv.Value)
		if _, err := m.Restore(ctx, path, false, ""); err != nil {
			m.o.Log.Error("restoring a domain saved at host shutdown", "name", name, "file", path, "err", err)
		} else {
			os.Remove(path)
			done[name] = true
			m.o.Log.Info("restored a domain saved at host shutdown", "name", name)
		}
		store.Delete(ctx, m.o.Store, kv.Key)
	}
	return done
}

// restoreInto starts a defined domain from a save file. Caller holds d.mu.
func (m *Manager) restoreInto(ctx context.Context, d *dom, path string) error {
	spec := d.rec.Spec
	if d.def != nil {
		spec = d.def.Spec
	}
	accel, err := m.validate(&spec, d.tenant)
	if err != nil {
		return err
	}
	incoming, closeFile, err := m.saveLoader(path, spec.Name, accel)
	if err != nil {
		return err
	}
	defer closeFile()
	_, err = m.startKept(ctx, d, startOpts{incoming: incoming, kind: kindRestore})
	return err
}

// autostart starts the defined domains marked so, lowest order first,
// waiting each one's delay after it; each is admitted like a create, and
// one that no longer fits is reported (in the log and as why it is
// stopped), never half-started.
func (m *Manager) autostart(ctx context.Context, skip map[string]bool) {
	type item struct {
		d    *dom
		name string
		a    api.Autostart
	}
	var items []item
	m.mu.Lock()
	for name, d := range m.doms {
		if li := d.live.Load(); li == nil && !skip[name] {
			if a, ok := autostartOf(d); ok {
				items = append(items, item{d, name, a})
			}
		}
	}
	m.mu.Unlock()
	sort.Slice(items, func(i, j int) bool {
		if items[i].a.Order != items[j].a.Order {
			return items[i].a.Order < items[j].a.Order
		}
		return items[i].name < items[j].name
	})
	for _, it := range items {
		if ctx.Err() != nil {
			return
		}
		it.d.mu.Lock()
		_, err := m.startKept(ctx, it.d, startOpts{})
		if err != nil {
			it.d.rec.LastReason = "autostart refused: " + err.Error()
			if it.d.def != nil {
				it.d.def.LastStop.Reason = it.d.rec.LastReason
				m.saveDef(ctx, it.name, it.d.def)
			}
			m.view(it.d)
		}
		it.d.mu.Unlock()
		if err != nil {
			m.o.Log.Error("autostart: not started", "name", it.name, "err", err)
			continue
		}
		m.o.Log.Info("autostart: started", "name", it.name, "order", it.a.Order)
		if it.a.DelaySec > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(it.a.DelaySec) * time.Second):
			}
		}
	}
}

func autostartOf(d *dom) (api.Autostart, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.def == nil || !d.def.Autostart.On {
		return api.Autostart{}, false
	}
	return d.def.Autostart, true
}

// HostShutdown ends every running domain for a host shutdown, all at
// once: the ACPI power button and, after the timeout, destroy (what
// xendomains and libvirt-guests do); or, with SaveDir, a save of each
// (restored at the next boot). It reports what happened to each.
func (m *Manager) HostShutdown(ctx context.Context, req api.HostShutdownRequest) api.HostShutdownResult {
	if req.TimeoutSec <= 0 {
		req.TimeoutSec = 120
	}
	var names []string
	for _, d := range m.List(false) {
		if d.PID != 0 {
			names = append(names, d.Spec.Name)
		}
	}
	res := api.HostShutdownResult{Domains: map[string]string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			outcome := m.shutdownOne(ctx, name, req)
			mu.Lock()
			res.Domains[name] = outcome
			mu.Unlock()
		}(name)
	}
	wg.Wait()
	return res
}

// noteSaved records (or, with path "", withdraws) the save file a domain
// is restored from at the next boot.
func (m *Manager) noteSaved(ctx context.Context, d *dom, name, path string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.def != nil {
		next := *d.def
		next.Saved = path
		if err := m.saveDef(ctx, name, &next); err != nil {
			return err
		}
		*d.def = next
		return nil
	}
	if path == "" {
		return store.Delete(ctx, m.o.Store, keyRestore+name)
	}
	return store.Put(ctx, m.o.Store, keyRestore+name, []byte(path))
}

func (m *Manager) shutdownOne(ctx context.Context, name string, req api.HostShutdownRequest) string {
	if req.SaveDir != "" {
		path := filepath.Join(req.SaveDir, name+".save")
		d, err := m.get(name)
		if err == nil {
			// Where it goes is written first: a daemon killed during the
			// save still knows, at the next boot, what to restore.
			err = m.noteSaved(ctx, d, name, path)
		}
		if err == nil {
			if err = m.Save(ctx, name, path, false); err != nil {
				m.noteSaved(ctx, d, name, "")
			}
		}
		if err == nil {
			return "saved to " + path
		}
		m.o.Log.Error("host shutdown: could not save; shutting it down instead", "name", name, "err", err)
	}
	// Not for a save: a saved domain ends as saved, to be restored.
	if d, err := m.get(name); err == nil {
		d.hostStop.Store(true)
	}
	err := m.Shutdown(ctx, name, api.ShutdownRequest{Wait: true, TimeoutSec: req.TimeoutSec})
	if err == nil {
		return "shut down"
	}
	if derr := m.Destroy(ctx, name); derr != nil {
		return fmt.Sprintf("could not be stopped: %v", derr)
	}
	return fmt.Sprintf("destroyed after %d s (it ignored the power button)", req.TimeoutSec)
}
