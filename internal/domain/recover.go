package domain

// Recovery: a daemon starting on a host where domains may run, may have
// died while it was away, or the host itself rebooted. A live QEMU is
// evidence, never garbage.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/procfs"
	"github.com/ringfence/ringfence/internal/store"
)

// Recover loads every definition, then re-attaches to every domain a
// previous daemon left running. A domain whose QEMU ended while no daemon
// watched gets on_crash, unless the host itself restarted since (the
// kernel's boot id changed): that is "host rebooted", never a crash, and
// no domain is lost to it. A store that cannot be read whole is refused
// (nothing is touched: its guests may run).
func (m *Manager) Recover(ctx context.Context) error {
	if b, err := m.o.Store.Get(ctx, keyNextID); err == nil {
		m.nextID, _ = strconv.Atoi(string(b))
	}
	m.mu.Lock()
	err := m.loadDefinitions(ctx)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	recs, err := readRecords(ctx, m.o.Store)
	if err != nil {
		return m.damaged(err)
	}
	known := map[string]bool{}
	for _, rec := range recs {
		known[rec.Spec.Name] = true
	}
	m.rebooted = m.hostRebooted(ctx)
	m.sweep(ctx, known)
	for _, rec := range recs {
		m.recoverOne(ctx, rec)
	}
	if err := m.o.Ledger.Oversold(); err != nil {
		m.o.Log.Error("the host is over its limits with the domains it runs: new domains are refused until some stop (or --reserve-mem/--vcpu-ratio are raised)", "err", err)
	}
	m.reconcileUsage(ctx)
	m.pruneLogs()
	return nil
}

// recoverOne takes back one runtime record.
func (m *Manager) recoverOne(ctx context.Context, rec record) {
	name := rec.Spec.Name
	if rt, ok := m.runtimeRecord(name); ok && (rt.Generation > rec.Generation || rt.Starting != nil && rec.Starting == nil) &&
		len(procfs.WithCmdline(m.runDir(name)+"/")) > 0 {
		// The store is older than the guest (restored from a backup):
		// the record next to its running QEMU is the truth.
		m.o.Log.Warn("the store's record of a domain is older than its running QEMU: using the one in its run dir", "name", name, "store_generation", rec.Generation, "run_generation", rt.Generation)
		rec = rt
	}
	m.mu.Lock()
	d, defined := m.doms[name]
	if !defined {
		d = &dom{console: newConsole(m.consoleLog(name)), tenant: rec.Tenant}
		d.con.Store(d.console)
		m.doms[name] = d
	}
	if rec.ID >= m.nextID {
		m.nextID = rec.ID + 1
	}
	if rec.Starting != nil && rec.Starting.ID >= m.nextID {
		m.nextID = rec.Starting.ID + 1
	}
	m.mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	defer m.view(d) // after whatever recovery did (a restart, say), before the unlock
	d.rec = rec
	m.view(d)
	if rec.Starting != nil && rec.Engine == nil {
		m.recoverStart(ctx, d)
		return
	}
	if rec.Ending != nil {
		m.recoverEnding(d)
		return
	}
	if rec.State == api.StateShutdown || rec.State == api.StateCrashed {
		return // preserved: holds no resources
	}
	m.reattach(ctx, d)
}

// recoverEnding carries out an end whose action was decided but not
// carried out. Caller holds d.mu.
func (m *Manager) recoverEnding(d *dom) {
	rec, name := d.rec, d.rec.Spec.Name
	m.o.Ledger.Adopt(m.ledgerEntry(rec.Spec, d.tenant, rec.Accel))
	m.o.Log.Warn("finishing the end of a domain the last daemon left undone", "name", name, "action", rec.Ending.Action)
	m.finalReading(d)
	for _, t := range rec.Taps {
		m.unplugTap(t)
	}
	d.rec.Taps = nil
	m.removeCgroup(name)
	m.applyAction(d, rec.Ending.Action, rec.Ending.State)
}

// reattach takes back a QEMU a previous daemon left running: the ledger,
// the console, its taps, and the state it is really in. Caller holds
// d.mu.
func (m *Manager) reattach(ctx context.Context, d *dom) {
	rec, name := d.rec, d.rec.Spec.Name
	if err := m.o.Ledger.Adopt(m.ledgerEntry(rec.Spec, d.tenant, rec.Accel)); err != nil {
		m.o.Log.Error("a running domain does not fit the ledger", "name", name, "err", err)
	}
	inst, err := m.o.Engine.Attach(ctx, rec.Engine)
	if err == nil {
		err = d.console.Connect(inst.SerialPath())
		if err != nil {
			inst.Kill()
		}
	}
	if err != nil {
		m.lostWhileAway(d, err)
		return
	}
	d.setInst(inst)
	d.uid.Store(int64(rec.QEMUUID))
	d.ended = make(chan struct{})
	if m.o.Networks != nil {
		// Its taps kept running; the network side learns them again
		// (leases, filters) before it renders the filter.
		for i, t := range rec.Taps {
			if i < len(rec.Spec.Vifs) {
				if err := m.o.Networks.Readopt(ctx, name, t, rec.Spec.Vifs[i]); err != nil {
					m.o.Log.Error("re-registering a vif", "name", name, "tap", t, "err", err)
				}
			}
		}
	}
	m.settleRunState(ctx, d, inst)
	m.save(ctx, d)
	m.watch(d, inst, d.ended)
	m.o.Log.Info("re-attached domain", "name", name, "id", rec.ID, "pid", inst.PID())
}

// settleRunState finishes a start that was recorded but not marked done
// (its vCPUs may not have been started) and takes the state the VM is
// really in. An incoming migration is never resumed here (the source may
// still run it). Caller holds d.mu.
func (m *Manager) settleRunState(ctx context.Context, d *dom, inst engine.Instance) {
	st, stErr := inst.Status(ctx)
	if s := d.rec.Starting; s != nil && stErr == nil {
		if s.Resume && s.Kind != kindMigrate && (st == engine.RunPrelaunch || st == engine.RunPaused) {
			if err := inst.Resume(ctx); err != nil {
				m.o.Log.Error("starting the vCPUs of an interrupted start", "name", d.rec.Spec.Name, "err", err)
			} else {
				st = engine.RunRunning
				m.o.Log.Warn("finished a start the last daemon left undone", "name", d.rec.Spec.Name)
			}
		}
		d.rec.Starting = nil
	}
	if stErr != nil {
		return
	}
	// Handed over: migrated to another host, unconfirmed.
	switch st {
	case engine.RunPaused, engine.RunPrelaunch, engine.RunHandedOver:
		m.setState(d, api.StatePaused)
	case engine.RunRunning:
		m.setState(d, api.StateRunning)
	}
}

// recoverStart finishes or undoes a start the last daemon was killed in
// before its QEMU was recorded: that QEMU (if it got so far) never ran
// guest code, so stopping it loses nothing; then a restart is carried out
// again, an interrupted create is undone, and a start is left to redo.
// Caller holds d.mu.
func (m *Manager) recoverStart(ctx context.Context, d *dom) {
	name, st := d.rec.Spec.Name, d.rec.Starting
	if pids := procfs.WithCmdline(m.runDir(name) + "/"); len(pids) > 0 {
		m.o.Log.Warn("stopping the QEMU of a start the last daemon did not finish (it never ran the guest)", "name", name, "pids", pids)
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		if !procfs.WaitGone(pids, 10*time.Second) {
			d.stray = pids
		}
	}
	for _, t := range st.Taps {
		m.unplugTap(t)
	}
	m.removeCgroup(name)
	for _, f := range []string{"qmp.sock", "serial.sock", "qemu.pid"} {
		os.Remove(filepath.Join(m.runDir(name), f))
	}
	d.rec.Starting, d.rec.Engine, d.rec.Taps = nil, nil, nil
	if len(d.stray) > 0 {
		m.holdStray(d, errors.New("it did not die when killed"))
		return
	}
	switch st.Kind {
	case kindRestart:
		m.o.Log.Warn("restarting a domain whose restart the last daemon did not finish", "name", name)
		m.o.Ledger.Adopt(m.ledgerEntry(d.rec.Spec, d.tenant, d.rec.Accel))
		m.applyAction(d, api.ActionRestart, api.StateCrashed)
	case kindStart:
		d.rec.LastReason = fmt.Sprintf("start interrupted: the daemon stopped while it started it; `ringfence start %s`", name)
		m.keepOrPreserve(d, api.StateShutdown)
	default: // a create, restore or incoming migration: undone
		m.o.Log.Warn("undoing a create the last daemon did not finish", "name", name, "kind", st.Kind)
		if d.def != nil {
			d.rec.LastReason = fmt.Sprintf("start interrupted: the daemon stopped while it created it; `ringfence start %s`", name)
		}
		m.endLocked(d, api.StateShutdown)
	}
}

// holdStray keeps a domain whose QEMU runs but cannot be managed: it
// holds its resources and says so; nothing is killed on a guess. Caller
// holds d.mu.
func (m *Manager) holdStray(d *dom, why error) {
	name := d.rec.Spec.Name
	m.o.Ledger.Adopt(m.ledgerEntry(d.rec.Spec, d.tenant, d.rec.Accel))
	m.setState(d, api.StateCrashed)
	d.rec.LastReason = fmt.Sprintf("its QEMU (pid %v) runs but could not be re-attached (%v): it keeps its resources; `ringfence destroy %s` stops it", d.stray, why, name)
	m.o.Log.Error("a domain's QEMU runs unattached", "name", name, "pids", d.stray, "err", why)
	m.save(context.Background(), d)
	m.view(d)
}

// killStray stops an unattached QEMU on an explicit destroy and cleans
// what it had. Caller holds d.mu.
func (m *Manager) killStray(d *dom) {
	for _, p := range d.stray {
		syscall.Kill(p, syscall.SIGKILL)
	}
	procfs.WaitGone(d.stray, 10*time.Second)
	d.stray = nil
	m.finalReading(d)
	for _, t := range d.rec.Taps {
		m.unplugTap(t)
	}
	d.rec.Taps, d.rec.Engine = nil, nil
	m.removeCgroup(d.rec.Spec.Name)
}

// lostWhileAway handles a domain whose QEMU ended while no daemon ran.
// Caller holds d.mu.
func (m *Manager) lostWhileAway(d *dom, why error) {
	name := d.rec.Spec.Name
	if pids := procfs.WithCmdline(m.runDir(name) + "/"); len(pids) > 0 {
		// Not ended: it runs but does not answer (or its record is not
		// what runs). A live QEMU is evidence, not garbage.
		d.stray = pids
		m.holdStray(d, why)
		return
	}
	m.finalReading(d)
	for _, t := range d.rec.Taps {
		m.unplugTap(t)
	}
	oom := m.oomReason(d)
	m.removeRunDir(name)
	d.rec.Taps, d.rec.Engine = nil, nil
	if m.rebooted {
		m.o.Log.Warn("domain stopped by the host's reboot", "name", name, "id", d.rec.ID)
		d.rec.LastReason = reasonHostReboot
		m.haLostHere(d)
		// A created (transient) domain is kept too, stopped, so nothing a
		// customer had is lost: `start` brings it back.
		m.keepOrPreserve(d, api.StateShutdown)
		return
	}
	d.rec.LastReason = "crash: the VM ended while the daemon was not running"
	if oom != "" {
		d.rec.LastReason = oom
	}
	if m.haLostHere(d) {
		m.o.Log.Warn("HA domain died while the daemon was away; kept for the cluster's HA", "name", name, "id", d.rec.ID, "err", why)
		m.applyAction(d, api.ActionPreserve, api.StateCrashed)
		return
	}
	m.o.Log.Warn("domain died while the daemon was away; applying on_crash", "name", name, "id", d.rec.ID, "err", why)
	m.applyAction(d, d.rec.Spec.OnCrash, api.StateCrashed)
}

// keyBootID is the kernel boot id the daemon last ran under.
const keyBootID = "meta/boot-id"

// hostRebooted reads the kernel's boot id, compares it with the one the
// last daemon recorded and records the current one. True when it changed
// (or was never recorded): the host itself restarted.
func (m *Manager) hostRebooted(ctx context.Context) bool {
	cur, err := procfs.BootID(m.o.BootIDFile)
	if err != nil {
		m.o.Log.Warn("reading the kernel's boot id", "err", err)
		return false
	}
	prev, _ := m.o.Store.Get(ctx, keyBootID)
	if err := store.Put(ctx, m.o.Store, keyBootID, []byte(cur)); err != nil {
		m.o.Log.Error("recording the boot id", "err", err)
	}
	m.firstSinceBoot = string(prev) != cur
	return len(prev) > 0 && string(prev) != cur
}

// sweep looks at run dirs that no record names. Without a live process
// it is what a killed daemon left of a start: its taps and cgroups go with
// it. With one, it is evidence, never garbage: a QEMU whose record sits
// in its run dir is re-adopted (the store is older than it, restored from
// a backup); one that cannot be accounted for is reported, left running,
// and new domains are refused until an admin resolves it.
func (m *Manager) sweep(ctx context.Context, known map[string]bool) {
	base := filepath.Join(m.o.RunDir, "domains")
	ents, _ := os.ReadDir(base)
	for _, ent := range ents {
		name := ent.Name()
		if known[name] || !ent.IsDir() {
			continue
		}
		dir := filepath.Join(base, name)
		rt, haveRec := m.runtimeRecord(name)
		if pids := procfs.WithCmdline(dir + "/"); len(pids) > 0 {
			if haveRec {
				m.o.Log.Warn("re-adopting a running domain the store did not know (the store is older than it: restored from a backup?)", "name", name, "pids", pids)
				m.recoverOne(ctx, rt)
				continue
			}
			m.o.Log.Error("a QEMU runs from a run dir no record names: left running; new domains are refused until it is resolved (kill it, or restore the store that knew it)", "dir", dir, "pids", pids)
			m.mu.Lock()
			m.unaccounted = append(m.unaccounted, pids...)
			m.mu.Unlock()
			continue
		}
		if haveRec {
			taps := rt.Taps
			if rt.Starting != nil {
				taps = append(taps, rt.Starting.Taps...)
			}
			for _, tap := range taps {
				m.unplugTap(tap)
			}
		}
		m.o.Log.Warn("removing a runtime dir with no domain record", "dir", dir)
		os.RemoveAll(dir)
		m.removeCgroup(name)
	}
}
