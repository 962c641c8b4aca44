package domain

// Incarnation lifecycle: how a running domain ends (its exit, the on_*
// action, the crash-loop brake) and the verbs that end, restart, pause or
// resume it.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/crashpoint"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/names"
	"github.com/ringfence/ringfence/internal/revert"
)

// watch waits for an incarnation to end and applies the domain's action.
func (m *Manager) watch(d *dom, inst engine.Instance, ended chan struct{}) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ex := <-inst.Wait()
		m.handleExit(d, inst, ex)
		close(ended)
	}()
}

func (m *Manager) handleExit(d *dom, inst engine.Instance, ex engine.Exit) {
	d.mu.Lock()
	defer d.mu.Unlock()
	// The list shows the last view while d.mu is held (by a sampler,
	// say): whatever the action did, that view is rendered before the
	// lock is let go.
	defer m.view(d)
	if d.inst != inst {
		return // superseded
	}
	name := d.rec.Spec.Name
	m.finalReading(d)
	for _, t := range d.rec.Taps {
		m.unplugTap(t)
	}
	d.rec.Taps = nil
	d.setInst(nil)
	d.uid.Store(0) // its QEMU is gone: the uid may serve another domain
	d.rec.Engine = nil
	for _, f := range []string{"qmp.sock", "serial.sock", "qemu.pid"} {
		os.Remove(filepath.Join(m.runDir(name), f))
	}
	oom := m.oomReason(d)
	m.removeCgroup(name)
	action, state := api.ActionDestroy, api.StateShutdown
	switch {
	case d.intent == "destroy" || d.destroying.Load():
	case ex.Reason == engine.ExitPoweroff && d.intent == "reboot":
		// `ringfence reboot` pressed the button for a restart.
		action = d.rec.Spec.OnReboot
	case ex.Reason == engine.ExitPoweroff:
		action = d.rec.Spec.OnPoweroff
	case ex.Reason == engine.ExitReboot:
		action = d.rec.Spec.OnReboot
	default: // crash, or killed by someone else
		action, state = d.rec.Spec.OnCrash, api.StateCrashed
	}
	d.rec.LastReason = ex.Reason
	if ex.Detail != "" {
		d.rec.LastReason += ": " + ex.Detail
	}
	if d.intent == "destroy" || d.destroying.Load() {
		d.rec.LastReason = "stopped: destroyed"
	}
	if oom != "" && d.intent != "destroy" && !d.destroying.Load() {
		d.rec.LastReason = oom
		m.o.Log.Error("domain killed: out of memory", "name", name, "id", d.rec.ID, "reason", oom)
	}
	if d.hostStop.Load() && oom == "" {
		action, state = api.ActionPreserve, api.StateShutdown
		d.rec.LastReason = reasonHostShutdown
		if d.destroying.Load() {
			d.rec.LastReason += " (destroyed: it ignored the power button)"
		}
	}
	// Only what the guest causes counts towards the brake: a crash, an OOM
	// kill, its own reset; not an admin's reboot or destroy.
	guestCaused := d.intent != "destroy" && !d.destroying.Load() && !d.hostStop.Load() &&
		(ex.Reason == engine.ExitCrash || ex.Reason == engine.ExitReboot && ex.Detail != "host-qmp-system-reset")
	if guestCaused && restarts(action) && m.braked(d) {
		action, state = api.ActionPreserve, api.StateCrashed
		m.o.Log.Error("domain stopped restarting", "name", name, "reason", d.rec.LastReason)
	}
	m.o.Log.Info("domain ended", "name", name, "id", d.rec.ID, "reason", ex.Reason, "detail", ex.Detail, "action", action)
	// Noted before it is carried out: a daemon killed from here on
	// carries out this action, not on_crash (its QEMU is simply gone).
	d.rec.Ending = &endIntent{Action: action, State: state}
	if err := m.save(context.Background(), d); err != nil {
		m.o.Log.Error("recording how a domain ended", "name", name, "err", err)
	}
	crashpoint.Hit("exit:noted")
	m.emitExit(d, ex, state)
	m.applyAction(d, action, state)
}

// restarts reports whether an on_* action starts the domain again.
func restarts(action string) bool {
	switch action {
	case api.ActionRestart, api.ActionRenameRestart, api.ActionCoredumpRestart, api.ActionSoftReset:
		return true
	}
	return false
}

// braked notes a guest-caused restart and reports whether it is one too
// many: RestartLimit of them within RestartWindow. Then the domain stays
// stopped, with why and its console's last lines. Caller holds d.mu.
func (m *Manager) braked(d *dom) bool {
	limit, window := m.o.RestartLimit, m.o.RestartWindow
	if limit <= 0 {
		limit = 5
	}
	if window <= 0 {
		window = 10 * time.Minute
	}
	now := time.Now()
	kept := d.rec.Restarts[:0]
	for _, t := range d.rec.Restarts {
		if now.Sub(t) < window {
			kept = append(kept, t)
		}
	}
	d.rec.Restarts = append(kept, now)
	if len(d.rec.Restarts) < limit {
		return false
	}
	span := now.Sub(d.rec.Restarts[0]).Round(time.Second)
	d.rec.LastReason = fmt.Sprintf("stopped restarting after %d restarts in %s (the limit is %d in %s); the last end: %s. "+
		"It stays stopped: see `ringfence console %s` (its output is kept), fix the cause, then `ringfence start %s`",
		len(d.rec.Restarts), span, limit, window, d.rec.LastReason, d.rec.Spec.Name, d.rec.Spec.Name)
	d.rec.Restarts = nil
	if d.console != nil {
		d.rec.LastConsole = lastLines(d.console.History(), 20)
	}
	return true
}

// lastLines are the last n non-empty lines of a console's output.
func lastLines(b []byte, n int) []string {
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// oomReason says, when the kernel killed the domain's QEMU at its memory
// limit, what happened and what to raise. Read before the cgroup goes.
func (m *Manager) oomReason(d *dom) string {
	if m.o.Cgroups == nil {
		return ""
	}
	ev := m.o.Cgroups.MemoryEvents(d.rec.Spec.Name)
	if ev.OOMKills == 0 {
		return ""
	}
	ram := d.rec.BootMaxMemMiB
	if ram == 0 {
		ram = d.rec.Spec.MaxMemMiB
	}
	return fmt.Sprintf("killed: out of memory (limit %d MiB, peak %d MiB): its QEMU needed more than the domain's guarantee (%d MiB guest RAM + %d MiB QEMU overhead); "+
		"raise the overhead (serve --qemu-overhead) or, if the guest itself ran out, its memory",
		ev.LimitB>>20, ev.PeakB>>20, ram, ev.LimitB>>20-int64(ram))
}

// applyAction does on_poweroff/on_reboot/on_crash. Caller holds d.mu and
// the domain has no running instance.
func (m *Manager) applyAction(d *dom, action string, state api.State) {
	ctx := context.Background()
	name := d.rec.Spec.Name
	switch action { // Xen's variants we accept act as their plain action
	case api.ActionCoredumpDestroy:
		action = api.ActionDestroy
	case api.ActionCoredumpRestart, api.ActionSoftReset:
		action = api.ActionRestart
	}
	if restarts(action) && !m.haAllows(d, true) {
		// Kept, not restarted: the cluster's HA restarts it elsewhere,
		// or, if no host could (a lost quorum), an admin starts it.
		action = api.ActionPreserve
	}
	switch action {
	case api.ActionRestart:
		crashpoint.Hit("restart:before-start")
		if err := m.start(ctx, d, startOpts{kind: kindRestart}); err == nil {
			return
		} else {
			m.o.Log.Error("restart failed; keeping the domain as crashed", "name", name, "err", err)
			d.rec.LastReason = "restart failed: " + err.Error()
		}
		state = api.StateCrashed
		fallthrough
	case api.ActionPreserve:
		if d.def != nil {
			m.keepStopped(d, state)
			return
		}
		m.setState(d, state)
		d.rec.Ending = nil
		m.o.Ledger.Release(name)
		if err := m.save(ctx, d); err != nil {
			m.o.Log.Error("saving preserved domain", "name", name, "err", err)
		}
	case api.ActionRenameRestart:
		m.mu.Lock()
		old := m.freeIncarnationName(name, d.rec.Generation)
		kept := &dom{rec: d.rec, tenant: d.tenant}
		m.setState(kept, state)
		kept.rec.Spec.Name = old
		os.MkdirAll(m.runDir(old), 0o700)
		os.WriteFile(m.consoleLog(old), d.console.History(), 0o600)
		kept.console = newConsole(m.consoleLog(old))
		kept.con.Store(kept.console)
		m.doms[old] = kept
		m.mu.Unlock()
		kept.rec.Ending = nil
		m.save(ctx, kept)
		if err := m.start(ctx, d, startOpts{kind: kindRestart}); err != nil {
			m.o.Log.Error("rename-restart failed", "name", name, "err", err)
			m.endLocked(d, api.StateCrashed)
		}
	default:
		m.endLocked(d, state)
	}
}

// freeIncarnationName is the name rename-restart keeps an old incarnation
// under: NAME--incarnation-N, with N raised past names already taken (an
// existing domain is never overwritten), shortened to the name rule's
// length. Caller holds m.mu.
func (m *Manager) freeIncarnationName(name string, gen int) string {
	for n := gen; ; n++ {
		suffix := fmt.Sprintf("--incarnation-%d", n)
		base := name
		if len(base)+len(suffix) > names.MaxLen {
			base = base[:names.MaxLen-len(suffix)]
		}
		cand := base + suffix
		if _, taken := m.doms[cand]; !taken {
			return cand
		}
	}
}

// destroyLocked removes a domain that has no running instance.
func (m *Manager) destroyLocked(d *dom) {
	name := d.rec.Spec.Name
	m.deleteRecord(name, m.usageEnd(d))
	m.o.Ledger.Release(name)
	if d.console != nil {
		d.console.Close()
	}
	m.removeRunDir(name)
	m.setState(d, api.StateDying)
	m.mu.Lock()
	if m.doms[name] == d {
		delete(m.doms, name)
	}
	m.mu.Unlock()
}

// removeRunDir removes a domain's run dir and cgroups (its QEMU is gone).
func (m *Manager) removeRunDir(name string) {
	os.RemoveAll(m.runDir(name))
	m.removeCgroup(name)
}

// removeCgroup removes a domain's cgroups once its processes are gone
// (idempotent); one that cannot be removed is logged, never forgotten
// silently.
func (m *Manager) removeCgroup(name string) {
	if m.o.Cgroups == nil {
		return
	}
	if err := m.o.Cgroups.Remove(name); err != nil {
		m.o.Log.Error("a domain's cgroup outlived its QEMU", "name", name, "err", err)
	}
}

// Destroy ends a domain at once, whatever its on_* settings.
func (m *Manager) Destroy(ctx context.Context, name string) (err error) {
	defer m.after(m.about(ctx, name), api.EvDestroyed, "", &err)
	d, err := m.get(name)
	if err != nil {
		return err
	}
	// Kill first, without waiting for the domain's lock: an operation
	// stuck on a stopped or hung QEMU holds it (until its QMP deadline),
	// and destroy must get through. The exit is handled as a destroy.
	d.destroying.Store(true)
	killed := false
	if li := d.live.Load(); li != nil {
		if err := li.Kill(); err != nil {
			d.destroying.Store(false)
			return fmt.Errorf("killing QEMU of %s: %w", name, err)
		}
		killed = true
	}
	d.mu.Lock()
	if d.inst == nil && killed {
		// The watcher took the lock first and handled the exit as this
		// destroy: done (removing it again could remove a new domain of
		// the same name).
		d.destroying.Store(false)
		d.mu.Unlock()
		return nil
	}
	if d.inst == nil && len(d.stray) > 0 {
		defer d.mu.Unlock()
		d.destroying.Store(false)
		m.killStray(d)
		d.rec.LastReason = "stopped: destroyed"
		m.endLocked(d, api.StateShutdown)
		return nil
	}
	if d.inst == nil {
		defer d.mu.Unlock()
		d.destroying.Store(false)
		if d.def != nil {
			return api.Errorf(api.ErrConflict, "%s is not running (it is defined: `ringfence undefine %s` removes it, `ringfence start %s` starts it)", name, name, name)
		}
		m.destroyLocked(d)
		return nil
	}
	d.intent = "destroy"
	inst, ended := d.inst, d.ended
	d.mu.Unlock()
	if err := inst.Kill(); err != nil {
		return fmt.Errorf("killing QEMU of %s: %w", name, err)
	}
	select {
	case <-ended:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Start starts a domain that is kept stopped (preserved after a shutdown
// or crash, or stopped by the crash-loop brake): admitted again like a
// create, with its console history kept.
func (m *Manager) Start(ctx context.Context, name string, paused bool) (_ api.Domain, err error) {
	defer m.after(m.about(ctx, name), api.EvStarted, "", &err)
	d, err := m.get(name)
	if err != nil {
		return api.Domain{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.def != nil && d.def.Saved != "" && d.inst == nil {
		// Saved at a host shutdown and not yet restored: it resumes
		// where it was rather than booting afresh.
		path := d.def.Saved
		if _, err := os.Stat(path); err == nil {
			if err := m.restoreInto(ctx, d, path); err != nil {
				return api.Domain{}, fmt.Errorf("restoring %s from %s (saved at host shutdown): %w", name, path, err)
			}
			os.Remove(path)
		}
		next := *d.def
		next.Saved = ""
		if err := m.saveDef(ctx, name, &next); err == nil {
			*d.def = next
		}
		if d.inst != nil {
			return m.view(d), nil
		}
	}
	return m.startKept(ctx, d, startOpts{paused: paused})
}

// startKept starts a kept (stopped) domain: admitted like a create, from
// its definition when it has one. Caller holds d.mu.
func (m *Manager) startKept(ctx context.Context, d *dom, so startOpts) (api.Domain, error) {
	name := d.rec.Spec.Name
	if d.inst != nil {
		return api.Domain{}, api.Errorf(api.ErrConflict, "%s is already %s", name, d.rec.State)
	}
	if !m.haAllows(d, false) {
		return api.Domain{}, api.Errorf(api.ErrConflict, "%s is an HA domain another host of the cluster owns now (or the cluster cannot be reached to ask): nothing started; `ringfence list` shows where it runs", name)
	}
	if so.kind == "" {
		so.kind = kindStart
	}
	if len(d.stray) > 0 {
		return api.Domain{}, api.Errorf(api.ErrConflict, "%s still has a QEMU that runs unattached (pid %v): `ringfence destroy %s` first", name, d.stray, name)
	}
	if d.def != nil {
		// A defined domain starts from its definition (with a config
		// update made while it ran).
		if d.def.Pending != nil {
			next := *d.def
			next.Spec, next.Pending = *d.def.Pending, nil
			if err := m.saveDef(ctx, name, &next); err != nil {
				return api.Domain{}, err
			}
			*d.def = next
		}
		d.rec.Spec = d.def.Spec
	}
	spec := d.rec.Spec
	// A provisioned domain's seed is made again from its settings.
	if err := m.provision(ctx, &spec, revert.New()); err != nil {
		return api.Domain{}, err
	}
	accel, err := m.validate(&spec, d.tenant)
	if err != nil {
		return api.Domain{}, err
	}
	m.mu.Lock()
	if err := m.diskInUse(spec); err != nil {
		m.mu.Unlock()
		return api.Domain{}, err
	}
	if err := m.vifsInUse(name, spec.Vifs); err != nil {
		m.mu.Unlock()
		return api.Domain{}, err
	}
	if err := m.admit(spec, d.tenant, accel); err != nil {
		m.mu.Unlock()
		return api.Domain{}, err
	}
	m.mu.Unlock()
	d.rec.Spec, d.rec.Accel = spec, accel
	if err := os.MkdirAll(m.runDir(name), 0o700); err != nil {
		m.o.Ledger.Release(name)
		return api.Domain{}, fmt.Errorf("creating runtime dir: %w", err)
	}
	if d.console == nil {
		d.console = newConsole(m.consoleLog(name))
		d.con.Store(d.console)
	}
	if err := m.start(ctx, d, so); err != nil {
		m.o.Ledger.Release(name)
		return api.Domain{}, err
	}
	d.rec.LastConsole, d.rec.Restarts = nil, nil
	m.save(ctx, d)
	m.o.Log.Info("domain started again", "name", name)
	return m.view(d), nil
}

// running returns the live instance or a conflict error.
func (m *Manager) running(name string) (*dom, engine.Instance, error) {
	d, err := m.get(name)
	if err != nil {
		return nil, nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inst == nil {
		return nil, nil, api.Errorf(api.ErrConflict, "%s is %s, not running: `ringfence destroy %s` removes it", name, d.rec.State, name)
	}
	return d, d.inst, nil
}

// Shutdown presses the ACPI power button; with Wait it waits for the
// guest to go, and with Force it destroys it after the timeout.
func (m *Manager) Shutdown(ctx context.Context, name string, req api.ShutdownRequest) error {
	d, inst, err := m.running(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	ended := d.ended
	d.askedBy = actorOf(ctx)
	d.mu.Unlock()
	// The guest agent when it answers (a clean poweroff even when the
	// guest does not listen to ACPI), the power button otherwise.
	viaAgent := m.agentShutdown(ctx, d, name)
	timeout, err := pressAndWait(ctx, name, inst, ended, req, viaAgent)
	if err != nil || timeout == 0 {
		return err
	}
	if req.Force {
		m.o.Log.Info("guest ignored the power button; destroying", "name", name)
		return m.Destroy(ctx, name)
	}
	return api.Errorf(api.ErrUnavailable, "%s did not shut down within %s: it may ignore ACPI; use --force or `ringfence destroy %s`", name, timeout, name)
}

// pressAndWait presses the ACPI power button (unless pressed, when the
// guest agent already took the shutdown) and, with Wait or Force, waits
// for the incarnation to end. It returns the timeout when the guest
// ignored the button that long (0 when it ended, or no wait was asked).
func pressAndWait(ctx context.Context, name string, inst engine.Instance, ended chan struct{}, req api.ShutdownRequest, pressed bool) (time.Duration, error) {
	if err := pressOnce(ctx, inst, pressed); err != nil {
		return 0, fmt.Errorf("sending ACPI power button to %s: %w", name, err)
	}
	if !req.Wait && !req.Force {
		return 0, nil
	}
	timeout := time.Duration(req.TimeoutSec) * time.Second
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	deadline := time.After(timeout)
	// A press that arrives before the guest listens for it (early boot) is
	// lost, so press again every few seconds while waiting.
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ended:
			return 0, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
			inst.Powerdown(ctx)
		case <-deadline:
			return timeout, nil
		}
	}
}

// pressOnce presses the power button unless the guest was already asked.
func pressOnce(ctx context.Context, inst engine.Instance, pressed bool) error {
	if pressed {
		return nil
	}
	return inst.Powerdown(ctx)
}

// Reboot asks the guest to restart, as xl, virsh and incus mean it: the
// ACPI power button, and when the guest has shut down it is started again
// as on_reboot says (there is no ACPI reboot button; libvirt does the
// same). With Wait it returns once the new incarnation runs; Force resets
// it hard if it ignores the button for the timeout.
func (m *Manager) Reboot(ctx context.Context, name string, req api.ShutdownRequest) error {
	d, inst, err := m.running(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	id, ended, onReboot := d.rec.ID, d.ended, d.rec.Spec.OnReboot
	d.intent = "reboot"
	d.askedBy = actorOf(ctx)
	d.mu.Unlock()
	timeout, err := pressAndWait(ctx, name, inst, ended, req, false)
	switch {
	case err != nil:
		return err
	case timeout != 0 && req.Force:
		m.o.Log.Info("guest ignored the power button; resetting", "name", name)
		return m.Reset(ctx, name)
	case timeout != 0:
		return api.Errorf(api.ErrUnavailable, "%s did not shut down within %s to reboot: it may ignore ACPI; `ringfence reset %s` restarts it hard", name, timeout, name)
	case !req.Wait:
		return nil
	}
	if v, err := m.Get(name); err == nil && v.ID != id && v.PID != 0 {
		return nil
	}
	return api.Errorf(api.ErrConflict, "%s shut down but was not started again (its on_reboot is %q, or the restart failed: see `ringfence list --all`)", name, onReboot)
}

// Reset is the hard reset (system_reset): the domain then follows
// on_reboot.
func (m *Manager) Reset(ctx context.Context, name string) error {
	_, inst, err := m.running(name)
	if err != nil {
		return err
	}
	return inst.Reset(ctx)
}

// Pause stops the vCPUs.
func (m *Manager) Pause(ctx context.Context, name string) error {
	return m.emitIf(ctx, name, api.EvPaused, "", m.setPaused(ctx, name, true))
}

// Unpause resumes the vCPUs.
func (m *Manager) Unpause(ctx context.Context, name string) error {
	return m.emitIf(ctx, name, api.EvUnpaused, "", m.setPaused(ctx, name, false))
}

func (m *Manager) setPaused(ctx context.Context, name string, pause bool) error {
	d, err := m.get(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inst == nil {
		return api.Errorf(api.ErrConflict, "%s is %s, not running", name, d.rec.State)
	}
	state := api.StatePaused
	if pause {
		err = d.inst.Pause(ctx)
	} else {
		// Its images must be its own again (after a handover that was never
		// confirmed, the destination may hold them: then it runs there).
		if lerr := m.takeLocks(d.inst, d.rec.Spec); lerr != nil {
			return api.Errorf(api.ErrConflict, "%s cannot run here: %v; if it runs on a migration's destination, destroy this copy", name, lerr)
		}
		err = d.inst.Resume(ctx)
		state = api.StateRunning
	}
	if err != nil {
		return err // the state changes only once QEMU has confirmed it
	}
	m.setState(d, state)
	return m.save(ctx, d)
}

// Console returns the console of a domain.
func (m *Manager) Console(name string) (*Console, error) {
	d, err := m.get(name)
	if err != nil {
		return nil, err
	}
	if c := d.con.Load(); c != nil {
		return c, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.console, nil
}

// keepOrPreserve keeps a domain that does not run: a defined one by its
// definition, a transient one by its record. Caller holds d.mu.
func (m *Manager) keepOrPreserve(d *dom, state api.State) {
	if d.def != nil {
		m.keepStopped(d, state)
		return
	}
	m.setState(d, state)
	m.o.Ledger.Release(d.rec.Spec.Name)
	m.save(context.Background(), d)
	m.view(d)
}
