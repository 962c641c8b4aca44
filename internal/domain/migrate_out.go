package domain

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/migration"
	"github.com/ringfence/ringfence/internal/revert"
)

// The source side of a live migration (the protocol: internal/migration).
//
// Handover rules, as the source keeps them: before "go", a failure on
// either side (the destination refuses, fails or closes the control
// channel; our QEMU fails; a cancel) resumes our guest. After "go" only
// the destination decides: "running" and the source lets go; "error" and
// the source resumes; silence (the link or the destination died) and the
// source keeps its copy paused and says so, as the guest may run there.
// So the guest never runs on two hosts.
//
// The undo of a failure is the revert stack: from the data connection on
// it closes the control channel (the destination drops its half), aborts
// the disk mirrors and resumes our guest (resumeHere); confirm commits it
// when the destination goes silent after "go".

// outgoing is one outgoing migration; run calls its steps in order.
type outgoing struct {
	m        *Manager
	d        *dom
	name     string
	inst     engine.Instance
	spec     api.DomainSpec
	accel    string
	p        MigrationPeer
	o        MigrateOptions
	progress func(api.MigrationProgress)
	t0       time.Time
	ctx      context.Context
	cancel   context.CancelFunc

	r   *revert.Reverter
	err error // the failure being reverted; resumeHere may add to it

	mig       engine.Migratable
	dm        engine.DiskMigrator
	disks     []migration.Disk
	ctl       *migration.Control
	closeOnce sync.Once
	token     string
	df        *os.File // QEMU's end of the data connection

	// Set by listen, the destination's side of the control channel.
	remote     chan remoteReply
	disksReady chan struct{}
	listening  chan struct{}
	readyOnce  sync.Once
	listenOnce sync.Once
	destErr    atomic.Pointer[string]
	nbdKey     string // set before disksReady closes

	stats engine.MigrationStats
	res   api.MigrationResult
}

// remoteReply is the destination's last word; lost: the channel broke
// instead.
type remoteReply struct {
	migration.Reply
	lost bool
}

// MigrateOut moves a running domain to the daemon at the other end of p.
func (m *Manager) MigrateOut(ctx context.Context, name string, p MigrationPeer, o MigrateOptions, progress func(api.MigrationProgress)) (_ api.MigrationResult, err error) {
	defer m.after(m.about(ctx, name), api.EvMigrated, "out to "+p.Hostname, &err)
	out, err := m.claimOutgoing(ctx, name)
	if err != nil {
		return api.MigrationResult{}, err
	}
	defer out.release()
	out.p, out.o, out.progress = p, o, progress
	return out.run()
}

// run calls the steps in order; the first failure reverts what is done.
func (o *outgoing) run() (api.MigrationResult, error) {
	steps := []func() error{
		o.check,         // the engine can do it; the disks to copy
		o.offer,         // header -> ok + token (the destination admitted it)
		o.openData,      // the data connection; from here a failure resumes us
		o.watch,         // follow the destination's messages
		o.mirror,        // --with-storage: disks in sync
		o.stream,        // the memory stream; our guest ends stopped
		o.finishMirrors, // --with-storage: the copies are exact
		o.handover,      // images released, "go"
		o.confirm,       // the destination's word
	}
	for _, step := range steps {
		if err := step(); err != nil {
			o.err = err
			o.r.Fail()
			return o.res, o.err
		}
	}
	o.r.Success()
	o.letGo()
	return o.res, nil
}

// claimOutgoing marks the domain as migrating (one migration at a time;
// CancelMigration cancels its context).
func (m *Manager) claimOutgoing(ctx context.Context, name string) (*outgoing, error) {
	t0 := time.Now()
	d, err := m.lockRunning(name)
	if err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	if d.migrating {
		return nil, api.Errorf(api.ErrConflict, "%s is already being migrated", name)
	}
	d.migrating = true
	ctx, cancel := context.WithCancelCause(ctx)
	d.cancelMig = cancel
	return &outgoing{m: m, d: d, name: name, inst: d.inst, spec: d.rec.Spec, accel: d.rec.Accel,
		t0: t0, ctx: ctx, cancel: func() { cancel(context.Canceled) }, r: revert.New()}, nil
}

// release ends the claim, after the revert.
func (o *outgoing) release() {
	o.cancel()
	o.d.mu.Lock()
	o.d.migrating = false
	o.d.cancelMig = nil
	o.d.mu.Unlock()
}

func (o *outgoing) check() error {
	var ok bool
	if o.mig, ok = o.inst.(engine.Migratable); !ok {
		return api.Errorf(api.ErrUnavailable, "this engine cannot migrate domains")
	}
	if !o.o.WithStorage {
		if o.o.StorageDir != "" {
			return api.Errorf(api.ErrInvalid, "--storage-dir needs --with-storage")
		}
		return nil
	}
	if o.dm, ok = o.inst.(engine.DiskMigrator); !ok {
		return api.Errorf(api.ErrUnavailable, "this engine cannot copy disks")
	}
	var err error
	o.disks, err = copiedDisks(o.spec)
	return err
}

func (o *outgoing) offer() error {
	o.ctl = migration.NewControl(o.p.Control)
	hdr := migration.Header{Spec: o.spec, Accel: o.accel, Plain: o.o.Plain, Storage: o.disks, StorageDir: o.o.StorageDir, Tenant: o.d.tenant,
		Usage: o.m.usageTotals(o.name)}
	if err := o.ctl.Send(hdr); err != nil {
		return fmt.Errorf("talking to the destination: %w", err)
	}
	var rep migration.Reply
	if err := o.ctl.ReadReply(&rep); err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	if !rep.OK {
		return &api.RemoteError{Message: "destination refused: " + rep.Error, Class: rep.Class}
	}
	o.token = rep.Token
	// From here the destination holds a reservation: closing the control
	// channel tells it to drop everything.
	o.r.Add(o.closeControl)
	return nil
}

func (o *outgoing) closeControl() { o.closeOnce.Do(func() { o.ctl.Close() }) }

func (o *outgoing) openData() error {
	data, err := o.p.DialData(o.ctx, o.token, o.o.Plain)
	if err != nil {
		return fmt.Errorf("opening the migration data connection: %w", err)
	}
	// The relay's own result is not needed: the destination runs the
	// guest only once it has loaded the whole stream.
	if o.df, _, err = migration.StreamFile(o.ctx, data, true); err != nil {
		return err
	}
	// Undone newest first: the stream, the control channel, the mirrors,
	// then our guest runs again.
	o.r.Add(o.resumeHere)
	if len(o.disks) > 0 {
		o.r.Add(o.dm.AbortMirrors)
	}
	o.r.Add(o.closeControl)
	o.r.Add(func() { o.df.Close() })
	return nil
}

// watch follows the destination: a destination that fails tells us on
// the control channel, and our side stops then instead of waiting for a
// socket timeout.
func (o *outgoing) watch() error {
	o.remote = make(chan remoteReply, 1)
	o.disksReady, o.listening = make(chan struct{}), make(chan struct{})
	go o.listen()
	return nil
}

func (o *outgoing) listen() {
	var r remoteReply
	for {
		if err := o.ctl.ReadReply(&r.Reply); err != nil {
			r = remoteReply{lost: true, Reply: migration.Reply{Error: err.Error()}}
		}
		// Each is said once; a peer that repeats one is ignored, never
		// allowed to close a channel twice (a panic in the daemon).
		if r.DisksReady {
			o.readyOnce.Do(func() { o.nbdKey = r.NBDKey; close(o.disksReady) })
		} else if r.Listening {
			o.listenOnce.Do(func() { close(o.listening) })
		} else {
			break
		}
	}
	if !r.Running {
		o.destErr.Store(&r.Error)
		o.cancel()
	}
	o.remote <- r
}

// errMigrationCancelled is the cause of a cancel the user asked for.
var errMigrationCancelled = errors.New("migration cancelled")

// failed says why the stream or the disk copy (what) failed: the user's
// cancel first (the destination then fails too, on the cut stream), then
// the destination's error, then any other cancel.
func (o *outgoing) failed(what string, err error) error {
	if errors.Is(context.Cause(o.ctx), errMigrationCancelled) {
		return api.Errorf(api.ErrConflict, "migration of %s cancelled; it keeps running here", o.name)
	}
	if e := o.destErr.Load(); e != nil {
		return fmt.Errorf("the destination failed (%s); %s keeps running here", *e, o.name)
	}
	if errors.Is(err, context.Canceled) {
		return api.Errorf(api.ErrConflict, "migration of %s cancelled; it keeps running here", o.name)
	}
	return fmt.Errorf("%s failed, %s keeps running here: %w", what, o.name, err)
}

func (o *outgoing) stream() error {
	// QEMU is made ready now; it sends only once the destination QEMU
	// reads the stream.
	stats, err := o.mig.MigrateTo(o.ctx, o.df, engine.MigrateOptions{DowntimeMs: o.o.DowntimeMs, Start: o.startWhenListening,
		Progress: func(s engine.MigrationStats) {
			if o.progress != nil {
				o.progress(api.MigrationProgress(s))
			}
		}})
	o.df.Close()
	if err != nil {
		return o.failed("migration", err)
	}
	o.stats = stats
	return nil
}

// startWhenListening lets QEMU start sending once the destination QEMU
// reads the stream (see docs/design.md: a blocked start corrupts memory).
func (o *outgoing) startWhenListening(ctx context.Context) error {
	select {
	case <-o.listening:
		if cg := o.m.o.Cgroups; cg != nil {
			// The thread appears with `migrate`: look for it from now.
			go o.m.chargeToHost(ctx, o.inst.PID(), "live_migration")
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Minute):
		return errors.New("the destination did not start listening within 2 minutes")
	}
}

// handover gives the guest to the destination: after "go" only its word
// decides (confirm).
func (o *outgoing) handover() error {
	// A destination that already failed or went away gets no handover.
	select {
	case r := <-o.remote:
		return fmt.Errorf("the destination failed before the handover (%s); %s keeps running here", r.Error, o.name)
	default:
	}
	// The images are the destination's from the handover on (same storage
	// on one host, or shared): it takes their locks when it runs the guest.
	if dl, ok := o.inst.(engine.DiskLocker); ok {
		if err := dl.ReleaseDiskLocks(o.m.launchSpec(o.d.rec.Spec, o.d.rec.Accel, 0).Disks); err != nil {
			return fmt.Errorf("releasing the image locks for the destination failed, %s keeps running here: %w", o.name, err)
		}
	}
	// The relay (the encrypted stream's last bytes) is not awaited: the
	// destination runs the guest only once it has loaded all of them.
	// The last reading here (the guest is stopped): the destination
	// continues these totals, and our last record ends with them.
	o.d.mu.Lock()
	totals := o.m.readTotals(context.Background(), o.d)
	o.d.endWhy = "migrated" // no reading here from now on
	o.d.mu.Unlock()
	if err := o.ctl.Send(migration.Go{Go: true, Usage: totals}); err != nil {
		return fmt.Errorf("the destination went away, %s keeps running here: %w", o.name, err)
	}
	return nil
}

// confirm waits for the destination's word: "running" (done), an error
// (resume here), or silence (paused here, nothing reverted).
func (o *outgoing) confirm() error {
	var r remoteReply
	select {
	case r = <-o.remote:
	case <-time.After(2 * time.Minute):
		r = remoteReply{lost: true, Reply: migration.Reply{Error: "no answer within 2 minutes"}}
	}
	if r.lost {
		// Handed over but unconfirmed: the guest may run there. Never
		// resume it here on a guess; record it as what it is, paused.
		o.r.Success()
		o.keepPaused()
		return api.Errorf(api.ErrConflict, "lost contact with the destination after handing %s over (%s): it is paused here; "+
			"if it runs on the destination, destroy this copy, otherwise `ringfence unpause %s`", o.name, r.Error, o.name)
	}
	if !r.Running {
		return fmt.Errorf("the destination did not take over (%s); %s keeps running here", r.Error, o.name)
	}
	// Total time ends when the guest runs there; letting go of our
	// (already stopped) copy is cleanup after that.
	o.res.TotalMs = time.Since(o.t0).Milliseconds()
	return nil
}

// letGo destroys our copy (the destination runs the guest), at the
// lowest CPU priority: freeing its RAM takes a while.
func (o *outgoing) letGo() {
	if cg := o.m.o.Cgroups; cg != nil {
		cg.Deprioritize(o.name)
	}

	if err := o.m.Destroy(context.Background(), o.name); err != nil {
		o.m.o.Log.Error("destroying the migrated-away copy", "name", o.name, "err", err)
	}
	o.res.QEMUTotalMs = o.stats.TotalMs
	o.res.DowntimeMs = o.stats.DowntimeMs
	o.res.TransferredB = o.stats.TransferredB
}

// resumeHere (revert) runs our copy again. Only our copy may run: take it
// (and its images' locks) back. If the locks are gone (the destination
// holds them: it may run the guest), our copy stays paused.
func (o *outgoing) resumeHere() {
	o.d.mu.Lock()
	o.d.endWhy = "" // it goes on here
	o.d.mu.Unlock()
	if err := o.m.takeLocks(o.inst, o.d.rec.Spec); err != nil {
		o.keepPaused()
		o.err = api.Errorf(api.ErrConflict, "%v; and the images could not be taken back (%v): %s is paused here; if it runs on the destination, destroy this copy, otherwise `ringfence unpause %s` once the images are free", o.err, err, o.name, o.name)
		return
	}
	if st, err := o.inst.Status(context.Background()); err == nil && st != engine.RunRunning {
		if rerr := o.inst.Resume(context.Background()); rerr != nil {
			o.m.o.Log.Error("resuming after a failed migration", "name", o.name, "err", rerr)
		}
	}
}

// keepPaused records our stopped copy as paused.
func (o *outgoing) keepPaused() {
	o.d.mu.Lock()
	o.m.setState(o.d, api.StatePaused)
	o.m.save(context.Background(), o.d)
	o.d.mu.Unlock()
}
