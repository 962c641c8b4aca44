package domain

// Launch: one incarnation of a domain made on the host (intent written
// first, taps, cgroups, QEMU, console) and its runtime record kept.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/crashpoint"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/revert"
	"github.com/ringfence/ringfence/internal/safefile"
	"github.com/ringfence/ringfence/internal/storage"
	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/usage"
)

// launchSpec turns a domain into the engine's plain data.
func (m *Manager) launchSpec(spec api.DomainSpec, accel string, id int) engine.LaunchSpec {
	ls := engine.LaunchSpec{
		Name: spec.Name, UUID: spec.UUID, Accel: accel,
		MemoryMiB: spec.MaxMemMiB, VCPUs: spec.VCPUs, MaxVCPUs: spec.MaxVCPUs,
		Prealloc: true, Balloon: true, HotplugSlots: spec.HotplugSlots,
		Kernel: spec.Kernel, Initrd: spec.Ramdisk, Cmdline: spec.Cmdline,
		RunDir:  m.runDir(spec.Name),
		LogFile: filepath.Join(m.logDir(spec.Name), "qemu.log"),
		Boot:    spec.Boot,
		VNC:     spec.VNC, VNCPassword: spec.VNCPassword != "",
		GuestAgent: spec.GuestAgent,
	}
	switch {
	case spec.Localtime:
		ls.RTCBase = "localtime"
	case spec.RTCOffsetSec != 0:
		ls.RTCBase = time.Now().UTC().Add(time.Duration(spec.RTCOffsetSec) * time.Second).Format("2006-01-02T15:04:05")
	}
	// Our console is the first serial port; PV files say hvc0 (mapped by
	// config) or nothing.
	if spec.Kernel != "" && !strings.Contains(ls.Cmdline, "console=") {
		ls.Cmdline = strings.TrimSpace(ls.Cmdline + " console=ttyS0")
	}
	// Huge pages back guest RAM when the admin configured enough of them.
	if hp := host.ReadHugePages(); hp.Mount != "" && hp.FreeKiB >= int64(spec.MaxMemMiB)<<10 {
		ls.HugePages = hp.Mount
	}
	for _, d := range spec.Disks {
		ls.Disks = append(ls.Disks, engine.Disk{ID: d.Guest, Path: d.Target, Format: d.Format, ReadOnly: d.Access == "ro", CDROM: d.CDROM,
			IOPS: d.IOPS, BPS: d.BPS})
	}
	for i, v := range spec.Vifs {
		ls.NICs = append(ls.NICs, engine.NIC{ID: engine.NICID(i, v.Port), Tap: tapName(id, i), MAC: v.MAC, Model: v.Model, Port: v.Port, MTU: v.MTU})
	}
	return ls
}

// Create admits, starts and records a new domain.
func (m *Manager) Create(ctx context.Context, req api.CreateRequest) (_ any, err error) {
	if !req.DryRun {
		defer m.after(m.about(ctx, req.Spec.Name), api.EvCreated, "", &err)
	}
	spec := req.Spec
	pr := revert.New()
	defer pr.Fail()
	var unmade map[string]bool // a dry run's provisioned files, not made
	if req.DryRun && spec.Provision != nil {
		pl, err := m.planProvision(ctx, spec)
		if err != nil {
			return nil, err
		}
		provisionSpec(&spec, pl)
		unmade = pl.unmade()
	} else if err := m.provision(ctx, &spec, pr); err != nil {
		return nil, err
	}
	accel, err := m.validateExcept(&spec, req.Tenant, unmade, false)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err == nil {
			pr.Success()
		}
	}()
	if (req.Persistent || spec.Persistent) && !req.DryRun {
		return m.createDefined(ctx, spec, req.Tenant, req.Paused)
	}
	if req.DryRun {
		argv, err := m.o.Engine.Argv(m.launchSpec(spec, accel, 0))
		if err != nil {
			return nil, api.Errorf(api.ErrInvalid, "%v", err)
		}
		return api.DryRun{Spec: spec.Shown(), Argv: argv, OverheadMiB: m.overhead(spec, accel)}, nil
	}
	return m.create(ctx, spec, accel, startOpts{paused: req.Paused, tenant: req.Tenant})
}

// startOpts say how an incarnation starts.
type startOpts struct {
	paused bool
	// incoming, when set, loads saved state into the new VM before it runs.
	incoming func(context.Context, engine.Migratable) error
	// admitted, when set, runs once the ledger has admitted the domain and
	// before anything is made on the host; an error aborts the create. A
	// migration destination answers the source here, so admission refuses
	// before any copying and the stream overlaps QEMU's start.
	admitted func(r *revert.Reverter) error
	// tl, when set, notes the steps of the start (migration timeline).
	tl *timeline
	// kind is why it starts (create when unset).
	kind startKind
	// tenant owns a new domain ("" = the host).
	tenant string
}

// create admits and starts a new domain (create and restore).
func (m *Manager) create(ctx context.Context, spec api.DomainSpec, accel string, so startOpts) (api.Domain, error) {
	r := revert.New()
	defer r.Fail()

	m.mu.Lock()
	if _, ok := m.doms[spec.Name]; ok {
		m.mu.Unlock()
		return api.Domain{}, api.Errorf(api.ErrConflict, "a domain named %q already exists: pick another name= or destroy it first", spec.Name)
	}
	if err := m.diskInUse(spec); err != nil {
		m.mu.Unlock()
		return api.Domain{}, err
	}
	if err := m.vifsInUse(spec.Name, spec.Vifs); err != nil {
		m.mu.Unlock()
		return api.Domain{}, err
	}
	if err := m.admit(spec, so.tenant, accel); err != nil {
		m.mu.Unlock()
		return api.Domain{}, err
	}
	r.Add(func() { m.o.Ledger.Release(spec.Name) })
	d := &dom{rec: record{Spec: spec, Accel: accel, State: api.StateDying, Tenant: so.tenant}, tenant: so.tenant}
	d.snap.Store(&api.Domain{Spec: spec.Shown(), State: api.StateDying, Flags: Flags(api.StateDying), Tenant: so.tenant})
	m.doms[spec.Name] = d
	r.Add(func() { m.mu.Lock(); delete(m.doms, spec.Name); m.mu.Unlock() })
	d.mu.Lock()
	m.mu.Unlock()
	defer d.mu.Unlock()
	if so.admitted != nil {
		if err := so.admitted(r); err != nil {
			return api.Domain{}, err
		}
	}

	so.tl.mark("admitted")
	if err := os.MkdirAll(m.runDir(spec.Name), 0o700); err != nil {
		return api.Domain{}, storage.NoSpace("the run dir", m.runDir(spec.Name), fmt.Errorf("creating runtime dir: %w", err))
	}
	r.Add(func() { os.RemoveAll(m.runDir(spec.Name)) })
	d.console = freshConsole(m.consoleLog(spec.Name), spec.Name)
	d.con.Store(d.console)
	r.Add(func() { d.console.Close() })
	if err := m.start(ctx, d, so); err != nil {
		return api.Domain{}, err
	}
	r.Success()
	return m.view(d), nil
}

// start launches one incarnation of d. Caller holds d.mu. On error
// everything this call made is undone, the record included.
//
// Every step that changes the host is preceded by a store write saying
// so: the intent (ID, taps) before anything is made, the QEMU (pid,
// sockets) before its vCPUs run, the end of the start after. A daemon
// killed at any point finds in the store what to finish or undo.
func (m *Manager) start(ctx context.Context, d *dom, so startOpts) error {
	if so.kind == "" {
		so.kind = kindCreate
	}
	l := &launcher{m: m, d: d, so: so, spec: d.rec.Spec, r: revert.New()}
	defer l.r.Fail()
	for _, step := range []func(context.Context) error{l.prepare, l.noteIntent, l.makeHost, l.startVMM, l.configure, l.record, l.run} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	l.r.Success()
	l.finish(ctx)
	return nil
}

// launcher is one start; its methods are the steps in the order they
// run, and r undoes every step made so far if a later one fails.
type launcher struct {
	m    *Manager
	d    *dom
	so   startOpts
	spec api.DomainSpec
	r    *revert.Reverter

	id   int
	uid  int
	ls   engine.LaunchSpec
	taps []string
	inst engine.Instance
}

// prepare takes an ID and a QEMU uid and makes the run dir.
func (l *launcher) prepare(context.Context) error {
	m, d := l.m, l.d
	id := m.allocID()
	l.id = id
	l.r.Add(func() {
		// Given back unless another start took one since: a failed
		// create leaves the ID counter as it found it.
		m.mu.Lock()
		if m.nextID == id+1 {
			m.nextID = id
		}
		m.mu.Unlock()
	})
	l.ls = m.launchSpec(l.spec, d.rec.Accel, l.id)
	uid, err := m.allocUID(d)
	if err != nil {
		return err
	}
	l.uid = uid
	l.r.Add(func() { d.uid.Store(0) })
	if uid != 0 {
		l.ls.RunAs = fmt.Sprintf("%d:%d", uid, uid)
	}
	if err := os.MkdirAll(l.ls.RunDir, 0o700); err != nil {
		return storage.NoSpace("the run dir", l.ls.RunDir, fmt.Errorf("creating runtime dir: %w", err))
	}
	// QEMU writes its pid file and sockets there: refused now, with the
	// filesystem named, rather than by QEMU's "cannot create PID file".
	return storage.CheckRoom("the run dir", l.ls.RunDir, runDirRoom)
}

// runDirRoom is the room a start needs in the run dir: QEMU's pid file
// and sockets, the runtime record.
const runDirRoom = 64 << 10

// noteIntent writes the start's intent (ID, planned taps) before
// anything is made on the host; undone, the record is what it was.
func (l *launcher) noteIntent(ctx context.Context) error {
	m, d, id, name := l.m, l.d, l.id, l.spec.Name
	var planned []string
	for _, n := range l.ls.NICs {
		planned = append(planned, n.Tap)
	}
	prev := d.rec
	_, getErr := m.o.Store.Get(ctx, keyDomains+name)
	hadRecord := getErr == nil
	d.rec.Starting = &startIntent{Kind: l.so.kind, ID: id, Taps: planned, Resume: !l.so.paused}
	d.rec.Ending, d.rec.Engine, d.rec.Taps = nil, nil, nil
	if err := m.save(ctx, d); err != nil {
		d.rec = prev
		return err
	}
	l.r.Add(func() {
		// Withdrawn: the record is what it was (none for a new domain).
		// The ID is given back first (prepare's undo runs after this),
		// so it is saved as it was.
		d.rec = prev
		m.mu.Lock()
		if m.nextID == id+1 {
			m.nextID = id
		}
		m.mu.Unlock()
		if hadRecord {
			m.save(context.Background(), d)
		} else {
			m.deleteRecordSaveID(name, m.usageDiscard(name))
		}
	})
	crashpoint.Hit("start:intent")
	return nil
}

// makeHost attaches the vifs' taps and makes the domain's cgroup.
func (l *launcher) makeHost(ctx context.Context) error {
	m, name := l.m, l.spec.Name
	for i, n := range l.ls.NICs {
		if err := m.plugTap(ctx, name, n.Tap, l.spec.Vifs[i]); err != nil {
			return api.Errorf(api.ErrCode(err, api.ErrInvalid), "vif %d: %v", i, err)
		}
		tap := n.Tap
		l.taps = append(l.taps, tap)
		l.r.Add(func() { m.unplugTap(tap) })
	}
	l.ls.Incoming = l.so.incoming != nil
	if cg := m.o.Cgroups; cg != nil {
		if err := cg.Create(name, m.limits(l.spec, l.d.rec.Accel)); err != nil {
			return fmt.Errorf("creating the domain's cgroup: %w", err)
		}
		l.r.Add(func() { m.removeCgroup(name) })
		l.ls.CgroupProcs = cg.ProcsFiles(name)
	}
	l.so.tl.mark("host-ready")
	crashpoint.Hit("start:host-ready")
	return nil
}

// startVMM starts QEMU, stopped before the guest's first instruction.
func (l *launcher) startVMM(ctx context.Context) error {
	inst, err := l.m.o.Engine.Start(ctx, l.ls)
	if err != nil {
		if oom := l.m.oomReason(l.d); oom != "" {
			l.m.o.Log.Error("domain killed at start: out of memory", "name", l.spec.Name, "reason", oom)
			return api.Errorf(api.ErrInsufficient, "starting %s: %s", l.spec.Name, oom)
		}
		return fmt.Errorf("starting %s: %w", l.spec.Name, err)
	}
	l.inst = inst
	l.r.Add(func() { inst.Kill(); <-inst.Wait() })
	l.so.tl.mark("qemu-up")
	l.so.tl.sched(inst.PID())
	crashpoint.Hit("start:qemu-up")
	return nil
}

// configure pins vCPUs, sets the boot balloon, attaches the console,
// sets the VNC password and loads incoming state (restore, migration).
func (l *launcher) configure(ctx context.Context) error {
	inst, spec := l.inst, l.spec
	if err := pinVCPUs(inst.PID(), inst.VCPUThreads(), spec.CPUs, l.m.o.HostCPUs); err != nil {
		return api.Errorf(api.ErrInvalid, "pinning vCPUs: %v", err)
	}
	if spec.MemoryMiB < spec.MaxMemMiB {
		// Boot "pre-ballooned" as xl does: RAM is maxmem, the guest is
		// asked to give back the difference.
		if err := inst.SetBalloon(ctx, int64(spec.MemoryMiB)<<20); err != nil {
			return fmt.Errorf("setting the balloon target: %w", err)
		}
	}
	if err := l.d.console.Connect(inst.SerialPath()); err != nil {
		return fmt.Errorf("attaching console: %w", err)
	}
	if err := setVNCPassword(ctx, inst, spec); err != nil {
		return err
	}
	l.so.tl.mark("console")
	if l.so.incoming == nil {
		return nil
	}
	mig, ok := inst.(engine.Migratable)
	if !ok {
		return errNoMigrate
	}
	if err := l.so.incoming(ctx, mig); err != nil {
		return fmt.Errorf("loading the saved state: %w", err)
	}
	return nil
}

// record stores the QEMU before its vCPUs start, so a daemon crash from
// here on finds (and re-attaches) it instead of leaking it.
func (l *launcher) record(ctx context.Context) error {
	m, d := l.m, l.d
	d.rec.ID = l.id
	d.rec.Taps = l.taps
	d.rec.StartedAt = time.Now()
	d.rec.Engine = l.inst.State()
	m.setState(d, api.StateRunning)
	if l.so.paused {
		m.setState(d, api.StatePaused)
	}
	d.rec.Generation++
	d.rec.BootMaxMemMiB = l.spec.MaxMemMiB
	d.rec.QEMUUID = l.uid
	if err := m.save(ctx, d); err != nil {
		return err
	}
	l.so.tl.mark("recorded")
	crashpoint.Hit("start:recorded")
	return nil
}

// run takes the images' locks of an incoming domain and starts the vCPUs
// (unless it starts paused).
func (l *launcher) run(ctx context.Context) error {
	if l.so.incoming != nil {
		// Started unlocked while the source held the images; the source
		// let go of them before the handover. Nobody else may have them:
		// a guest never runs on an image another process writes.
		if err := l.m.takeLocks(l.inst, l.spec); err != nil {
			return fmt.Errorf("taking the images' locks: %w", err)
		}
	}
	if !l.so.paused {
		if err := l.inst.Resume(ctx); err != nil {
			return fmt.Errorf("starting vCPUs: %w", err)
		}
		l.so.tl.mark("running")
	}
	crashpoint.Hit("start:running")
	return nil
}

// finish marks the start done and watches the new incarnation.
func (l *launcher) finish(ctx context.Context) {
	m, d, inst := l.m, l.d, l.inst
	d.rec.Starting = nil
	if err := m.save(ctx, d); err != nil {
		// It runs and the store says so (Engine); the intent left in the
		// store only makes a later daemon check it is resumed.
		m.o.Log.Error("marking a start done", "name", l.spec.Name, "err", err)
	}
	d.setInst(inst)
	d.intent = ""
	d.hostStop.Store(false)
	d.ended = make(chan struct{})
	m.watch(d, inst, d.ended)
	m.o.Log.Info("domain started", "name", l.spec.Name, "id", l.id, "pid", inst.PID(), "accel", d.rec.Accel)
}

func (m *Manager) save(ctx context.Context, d *dom) error {
	b, err := json.Marshal(d.rec)
	if err != nil {
		return err
	}
	m.mu.Lock()
	next := m.nextID
	m.mu.Unlock()
	// What the domain holds is billed in the same transaction that
	// records it (usage.go).
	uc := m.usageChange(ctx, d)
	err = m.o.Store.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put(keyNextID, []byte(strconv.Itoa(next))); err != nil {
			return err
		}
		if err := writeUsage(uc)(tx); err != nil {
			return err
		}
		return tx.Put(keyDomains+d.rec.Spec.Name, b)
	})
	uc.Done(err)
	if err != nil {
		return fmt.Errorf("saving domain state: %w", err)
	}
	m.saveRuntime(d.rec.Spec.Name, b)
	return nil
}

// saveRuntime keeps a copy of the record in the domain's run dir (when it
// has one): the runtime facts next to the QEMU they describe, so a daemon
// whose store is older than its guests (restored from a backup) re-adopts
// them instead of taking them for strangers.
func (m *Manager) saveRuntime(name string, b []byte) {
	dir := m.runDir(name)
	if _, err := os.Stat(dir); err != nil {
		return
	}
	if err := safefile.WriteFile(filepath.Join(dir, "record.json"), b, 0o600); err != nil {
		m.o.Log.Warn("keeping the runtime record", "name", name, "err", err)
	}
}

// runtimeRecord reads the copy saveRuntime keeps.
func (m *Manager) runtimeRecord(name string) (record, bool) {
	var rec record
	b, err := os.ReadFile(filepath.Join(m.runDir(name), "record.json"))
	if err != nil || json.Unmarshal(b, &rec) != nil || rec.Spec.Name != name {
		return record{}, false
	}
	return rec, true
}

// deleteRecordSaveID deletes a record and saves the ID counter in one
// transaction, with uc (the domain's last usage record, or nil).
func (m *Manager) deleteRecordSaveID(name string, uc *usage.Change) {
	m.mu.Lock()
	next := m.nextID
	m.mu.Unlock()
	err := m.o.Store.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.Put(keyNextID, []byte(strconv.Itoa(next))); err != nil {
			return err
		}
		if err := writeUsage(uc)(tx); err != nil {
			return err
		}
		return tx.Delete(keyDomains + name)
	})
	uc.Done(err)
	if err != nil {
		m.o.Log.Error("deleting domain record", "name", name, "err", err)
	}
}

// deleteRecord deletes a record, with uc (nil, or the domain's last
// usage record) in the same transaction.
func (m *Manager) deleteRecord(name string, uc *usage.Change) {
	err := m.o.Store.Update(context.Background(), func(tx store.Tx) error {
		if err := writeUsage(uc)(tx); err != nil {
			return err
		}
		return tx.Delete(keyDomains + name)
	})
	uc.Done(err)
	if err != nil {
		m.o.Log.Error("deleting domain record", "name", name, "err", err)
	}
}
