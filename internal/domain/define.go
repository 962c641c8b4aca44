package domain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/crashpoint"
	"github.com/ringfence/ringfence/internal/store"
)

// A defined domain's definition is its desired state, kept in the store
// under definitions/NAME apart from its runtime record (domains/NAME:
// domain ID, pid, taps, QEMU state), so that the definition outlives every
// stop, crash, daemon kill and host reboot, and a cluster can later move
// it between hosts. A domain made with `create` (xl's meaning) has no
// definition: it is transient, unless its file says `persistent = 1`.
const keyDefinitions = "definitions/"

type definition struct {
	Spec api.DomainSpec `json:"spec"`
	// Pending is a `config update` made while the domain ran: it is the
	// spec of its next start.
	Pending   *api.DomainSpec `json:"pending,omitempty"`
	Autostart api.Autostart   `json:"autostart"`
	// Saved is a save file a host shutdown left (`shutdown --all --save`):
	// the next start restores it instead of booting.
	Saved    string       `json:"saved,omitempty"`
	LastStop api.StopInfo `json:"last_stop"`
	Created  time.Time    `json:"created"`
	Updated  time.Time    `json:"updated"`
	// Tenant owns the domain ("" = the host's own).
	Tenant string `json:"tenant,omitempty"`
}

// Stop reasons shown by `list --all`.
const (
	reasonNeverStarted = "never started"
	reasonHostReboot   = "host rebooted"
	reasonHostShutdown = "host shut down"
)

func (m *Manager) saveDef(ctx context.Context, name string, def *definition) error {
	def.Updated = time.Now().UTC()
	b, err := json.Marshal(def)
	if err != nil {
		return err
	}
	if err := store.Put(ctx, m.o.Store, keyDefinitions+name, b); err != nil {
		return fmt.Errorf("saving the definition of %s: %w", name, err)
	}
	return nil
}

// Define stores a domain without starting it (virsh define; xl's
// /etc/xen/auto files are defined this way by autostart).
// tenant owns it ("" = the host).
func (m *Manager) Define(ctx context.Context, spec api.DomainSpec, tenant string) (_ api.Domain, err error) {
	defer m.after(m.about(ctx, spec.Name), api.EvDefined, "", &err)
	if _, err := m.validate(&spec, tenant); err != nil {
		return api.Domain{}, err
	}
	spec.Persistent = true
	m.mu.Lock()
	if _, ok := m.doms[spec.Name]; ok {
		m.mu.Unlock()
		return api.Domain{}, api.Errorf(api.ErrConflict, "a domain named %q already exists: `ringfence config update %s FILE` changes its definition, or pick another name", spec.Name, spec.Name)
	}
	now := time.Now().UTC()
	def := &definition{Spec: spec, Created: now, LastStop: api.StopInfo{State: api.StateShutdown, Reason: reasonNeverStarted, At: now}, Tenant: tenant}
	d := &dom{def: def, rec: record{Spec: spec, State: api.StateShutdown, LastReason: reasonNeverStarted, Tenant: tenant}, tenant: tenant}
	d.console = freshConsole(m.consoleLog(spec.Name), spec.Name)
	d.con.Store(d.console)
	m.doms[spec.Name] = d
	m.mu.Unlock()
	if err := m.saveDef(ctx, spec.Name, def); err != nil {
		m.mu.Lock()
		delete(m.doms, spec.Name)
		m.mu.Unlock()
		return api.Domain{}, err
	}
	crashpoint.Hit("define:saved")
	d.mu.Lock()
	defer d.mu.Unlock()
	m.account(ctx, d) // a defined domain holds its disks
	m.o.Log.Info("domain defined", "name", spec.Name)
	return m.view(d), nil
}

// createDefined is `create` of a persistent domain: defined, then started;
// a start that fails leaves no definition behind.
func (m *Manager) createDefined(ctx context.Context, spec api.DomainSpec, tenant string, paused bool) (api.Domain, error) {
	if _, err := m.Define(ctx, spec, tenant); err != nil {
		return api.Domain{}, err
	}
	v, err := m.Start(ctx, spec.Name, paused)
	if err != nil {
		if uerr := m.Undefine(context.Background(), spec.Name); uerr != nil {
			m.o.Log.Error("undoing the definition of a create that failed", "name", spec.Name, "err", uerr)
		}
		return api.Domain{}, err
	}
	return v, nil
}

// Undefine removes a domain's definition. A running domain keeps running,
// transient from then on (as virsh undefine); a stopped one is gone.
func (m *Manager) Undefine(ctx context.Context, name string) (err error) {
	defer m.after(m.about(ctx, name), api.EvUndefined, "", &err)
	d, err := m.get(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.def == nil {
		return api.Errorf(api.ErrConflict, "%s is not defined (it was created: transient); `ringfence destroy %s` removes it", name, name)
	}
	if err := store.Delete(ctx, m.o.Store, keyDefinitions+name); err != nil {
		return err
	}
	d.def = nil
	d.rec.Spec.Persistent = false
	if d.inst == nil {
		d.endWhy = "undefined"
		m.destroyLocked(d)
	} else {
		m.save(ctx, d)
		m.view(d)
	}
	m.o.Log.Info("domain undefined", "name", name)
	return nil
}

// Definition returns a defined domain's definition.
func (m *Manager) Definition(name string) (api.Definition, error) {
	d, err := m.get(name)
	if err != nil {
		return api.Definition{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.def == nil {
		return api.Definition{}, api.Errorf(api.ErrNotFound, "%s has no definition (it was created: transient)", name)
	}
	return d.def.api(), nil
}

func (def *definition) api() api.Definition {
	var pending *api.DomainSpec
	if def.Pending != nil {
		p := def.Pending.Shown()
		pending = &p
	}
	return api.Definition{Spec: def.Spec.Shown(), Pending: pending, Autostart: def.Autostart, Saved: def.Saved, LastStop: def.LastStop, Created: def.Created, Updated: def.Updated}
}

// UpdateDefinition replaces a defined domain's definition (`config
// update`): checked like a create, nothing changed on error; applied at
// once when it is stopped, at its next start when it runs.
func (m *Manager) UpdateDefinition(ctx context.Context, name string, spec api.DomainSpec) (api.Definition, error) {
	if spec.Name != name {
		return api.Definition{}, api.Errorf(api.ErrInvalid, "the file defines %q, not %q: a rename is not an update", spec.Name, name)
	}
	if err := m.keepHiddenPassword(name, &spec); err != nil {
		return api.Definition{}, err
	}
	tenant, err := m.Owner(name)
	if err != nil {
		return api.Definition{}, err
	}
	if _, err := m.validate(&spec, tenant); err != nil {
		return api.Definition{}, err
	}
	spec.Persistent = true
	return m.changeDef(ctx, name, "`ringfence define FILE` after it stops, or give its file persistent = 1", func(d *dom, next *definition) {
		if d.inst != nil {
			next.Pending = &spec
		} else {
			next.Spec, next.Pending = spec, nil
			d.rec.Spec = spec
		}
	})
}

// SetAutostart turns a defined domain's start at host boot on or off.
func (m *Manager) SetAutostart(ctx context.Context, name string, a api.Autostart) (api.Definition, error) {
	if a.Order < 0 || a.Order > 1000 || a.DelaySec < 0 || a.DelaySec > 3600 {
		return api.Definition{}, api.Errorf(api.ErrInvalid, "autostart: order 0..1000 and delay 0..3600 s")
	}
	return m.changeDef(ctx, name, "only a defined domain can start at boot; `ringfence define FILE`", func(_ *dom, next *definition) {
		next.Autostart = a
	})
}

// changeDef changes a copy of a defined domain's definition, stores it,
// and only then makes it the domain's: a store error changes nothing.
// fix says what to do when the domain is transient.
func (m *Manager) changeDef(ctx context.Context, name, fix string, change func(d *dom, next *definition)) (api.Definition, error) {
	d, err := m.get(name)
	if err != nil {
		return api.Definition{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.def == nil {
		return api.Definition{}, api.Errorf(api.ErrConflict, "%s is not defined (it was created: transient): %s", name, fix)
	}
	next := *d.def
	spec := d.rec.Spec
	change(d, &next)
	if err := m.saveDef(ctx, name, &next); err != nil {
		d.rec.Spec = spec
		return api.Definition{}, err
	}
	*d.def = next
	m.view(d)
	return d.def.api(), nil
}

// keepStopped ends a defined domain's incarnation without forgetting it:
// its runtime record, run dir and resources go; the definition stays,
// with why it stopped. Caller holds d.mu; d has no running instance.
func (m *Manager) keepStopped(d *dom, state api.State) {
	name := d.rec.Spec.Name
	m.deleteRecord(name, nil)
	m.o.Ledger.Release(name)
	m.removeRunDir(name)
	m.setState(d, state)
	d.rec.Engine, d.rec.Taps = nil, nil
	if d.def.Pending != nil {
		// A config update waited for this stop.
		d.def.Spec, d.def.Pending = *d.def.Pending, nil
	}
	d.rec.Spec = d.def.Spec
	d.def.LastStop = api.StopInfo{State: state, Reason: d.rec.LastReason, At: time.Now().UTC()}
	if err := m.saveDef(context.Background(), name, d.def); err != nil {
		m.o.Log.Error("recording why a defined domain stopped", "name", name, "err", err)
	}
	m.account(context.Background(), d)
	m.view(d)
}

// endLocked is what an end that does not restart does to d: a defined
// domain is kept stopped, a transient one goes.
func (m *Manager) endLocked(d *dom, state api.State) {
	if d.def != nil {
		m.keepStopped(d, state)
		return
	}
	m.destroyLocked(d)
}

// loadDefinitions registers every defined domain, stopped, before the
// runtime records say which of them run.
func (m *Manager) loadDefinitions(ctx context.Context) error {
	defs, err := readDefinitions(ctx, m.o.Store)
	if err != nil {
		return m.damaged(err)
	}
	for _, def := range defs {
		name := def.Spec.Name
		state, reason := def.LastStop.State, def.LastStop.Reason
		if state == "" {
			state = api.StateShutdown
		}
		d := &dom{def: def, rec: record{Spec: def.Spec, State: state, LastReason: reason, Tenant: def.Tenant}, tenant: def.Tenant}
		d.console = newConsole(m.consoleLog(name))
		d.con.Store(d.console)
		d.snap.Store(&api.Domain{Spec: def.Spec.Shown(), State: state, Flags: Flags(state), LastReason: reason, Defined: true, Tenant: def.Tenant})
		m.doms[name] = d
	}
	return nil
}

// damaged is the refusal of a store that cannot be read whole.
func (m *Manager) damaged(err error) error {
	return fmt.Errorf("the store %s is damaged: %v. The daemon did not start, and touched no guest (they run on). Restore the newest good backup: `ringfence store restore --state-dir %s` (backups in %s)",
		filepath.Join(m.o.StateDir, "state.db"), err, m.o.StateDir, filepath.Join(m.o.StateDir, "backups"))
}

// readDefinitions decodes every definition; one that cannot be read is
// an error naming it (never skipped: skipping would lose the domain).
func readDefinitions(ctx context.Context, st store.Store) ([]*definition, error) {
	kvs, err := st.List(ctx, keyDefinitions)
	if err != nil {
		return nil, fmt.Errorf("reading definitions: %w", err)
	}
	var out []*definition
	for _, kv := range kvs {
		def := &definition{}
		err := json.Unmarshal(kv.Value, def)
		if err == nil && def.Spec.Name == "" {
			err = errors.New("it names no domain")
		}
		if err != nil {
			return nil, fmt.Errorf("its definition %s cannot be read (%v)", kv.Key, err)
		}
		out = append(out, def)
	}
	return out, nil
}

// readRecords decodes every runtime record, the same way.
func readRecords(ctx context.Context, st store.Store) ([]record, error) {
	kvs, err := st.List(ctx, keyDomains)
	if err != nil {
		return nil, fmt.Errorf("reading domains: %w", err)
	}
	recs := make([]record, len(kvs))
	for i, kv := range kvs {
		err := json.Unmarshal(kv.Value, &recs[i])
		if err == nil && recs[i].Spec.Name == "" {
			err = errors.New("it names no domain")
		}
		if err != nil {
			return nil, fmt.Errorf("its record %s cannot be read (%v)", kv.Key, err)
		}
	}
	return recs, nil
}

// VerifyStore reads every definition and record as a daemon's recovery
// would (`ringfence store check`, and the daemon's check before it opens
// the store).
func VerifyStore(ctx context.Context, st store.Store) error {
	if _, err := readDefinitions(ctx, st); err != nil {
		return err
	}
	_, err := readRecords(ctx, st)
	return err
}
