package domain

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/migration"
	"github.com/ringfence/ringfence/internal/revert"
)

// The destination side of a live migration (the protocol:
// internal/migration).
//
// Handover rules, as the destination keeps them: a refusal before "ok"
// creates nothing and copies nothing. Before "go", the source closing
// the control channel (its QEMU failed, or it was cancelled or died)
// aborts the load and create's revert stack removes the half-made domain
// (and the disks made for it). The guest runs only after "go"; once it
// runs the source is told "running", and if that cannot be said the
// guest still runs here (the source keeps a paused copy, never a running
// one).

// incoming is one incoming migration; run calls its steps in order, and
// create calls admitted and load as steps of the domain's start.
type incoming struct {
	m   *Manager
	ctl *migration.Control
	tl  *timeline

	hdr   migration.Header
	spec  api.DomainSpec // hdr's spec with the disks' places here
	accel string
	plan  []migration.Disk // the disks to create (--with-storage)

	token  string
	dataCh chan net.Conn
	nbdL   *net.UnixListener // the NBD server's socket (--with-storage)

	answered bool          // "ok" went out: errors go without a class
	aborted  chan struct{} // the source closed the control channel
	handover chan struct{} // the source said "go"

	cancel context.CancelFunc // stops the load
	dm     engine.DiskMigrator
	nbdKey string
}

// inMig is an incoming migration waiting for its data connections.
type inMig struct {
	data    chan net.Conn
	nbdSock string // where NBD connections are relayed ("" = none expected)
}

// MigrateIn receives a domain on conn (the destination side).
func (m *Manager) MigrateIn(ctx context.Context, conn net.Conn) error {
	in := &incoming{m: m, tl: newTimeline(), ctl: migration.NewControl(conn),
		aborted: make(chan struct{}), handover: make(chan struct{})}
	err := in.run(ctx)
	return m.emitIf(ctx, in.spec.Name, api.EvMigrated, "in", err)
}

func (in *incoming) run(ctx context.Context) error {
	var err error
	if in.hdr, err = in.ctl.ReadHeader(30 * time.Second); err != nil {
		return err
	}
	if err := in.validate(); err != nil {
		return in.ctl.Refuse(err)
	}
	if err := in.m.claim(ctx, in.spec.Name); err != nil {
		return in.ctl.Refuse(err)
	}
	if err := in.reserve(); err != nil {
		return in.ctl.Refuse(err)
	}
	defer in.release()
	in.tl.mark("validated")
	if err := in.create(ctx); err != nil {
		return err
	}
	return in.confirm()
}

// validate maps the disks to copy to paths here and checks the domain
// could run here, as the source runs it.
func (in *incoming) validate() error {
	in.spec = in.hdr.Spec
	plan, err := in.m.planStorage(&in.spec, in.hdr.Storage, in.hdr.StorageDir)
	if err != nil {
		return err
	}
	skip := map[string]bool{}
	for _, d := range plan {
		skip[d.ID] = true
	}
	accel, err := in.m.validateExcept(&in.spec, in.hdr.Tenant, skip, true)
	if err != nil {
		return err
	}
	if accel != in.hdr.Accel {
		return api.Errorf(api.ErrInvalid, "%s runs under %s there and %s here: its CPU state cannot move", in.spec.Name, in.hdr.Accel, accel)
	}
	in.plan, in.accel = plan, accel
	return nil
}

// reserve makes the token the data connections name, and the NBD socket.
func (in *incoming) reserve() error {
	in.token = randomHex(24)
	in.dataCh = make(chan net.Conn, 1)
	im := &inMig{data: in.dataCh}
	if len(in.plan) > 0 {
		l, err := nbdListener(filepath.Join(in.m.o.RunDir, "migrate", in.token[:12]))
		if err != nil {
			return err
		}
		in.nbdL = l
		im.nbdSock = l.Addr().String()
	}
	in.m.mu.Lock()
	in.m.migData[in.token] = im
	in.m.mu.Unlock()
	return nil
}

// release undoes reserve, once the migration ended either way.
func (in *incoming) release() {
	in.m.mu.Lock()
	delete(in.m.migData, in.token)
	in.m.mu.Unlock()
	select {
	case c := <-in.dataCh:
		c.Close()
	default:
	}
	if in.nbdL != nil {
		dir := filepath.Dir(in.nbdL.Addr().String())
		in.nbdL.Close()
		os.RemoveAll(dir)
	}
}

// create admits and starts the domain, with admitted and load as steps
// of its start; its revert stack removes everything if one fails.
func (in *incoming) create(ctx context.Context) error {
	_, err := in.m.create(ctx, in.spec, in.accel, startOpts{admitted: in.admitted, incoming: in.load, tl: in.tl, kind: kindMigrate, tenant: in.hdr.Tenant})
	if err == nil {
		return nil
	}
	if !in.answered {
		return in.ctl.Refuse(err)
	}
	in.ctl.Send(migration.Reply{Error: err.Error()})
	return err
}

// admitted (the ledger took the domain) makes the disks and answers ok
// with the token, so the stream overlaps QEMU's start.
func (in *incoming) admitted(r *revert.Reverter) error {
	if len(in.plan) > 0 {
		if err := createDisks(in.plan); err != nil {
			return err
		}
		r.Add(func() { removeDisks(in.plan) })
	}
	if err := in.ctl.Send(migration.Reply{OK: true, Token: in.token}); err != nil {
		return err
	}
	in.answered = true
	go func() {
		defer close(in.aborted)
		in.ctl.AwaitGo(func(g migration.Go) {
			// The guest's records continue here from the source's
			// final totals (the header's, if it sent none).
			totals := in.hdr.Usage
			if g.Usage != nil {
				totals = g.Usage
			}
			in.m.seedUsage(in.spec.Name, totals)
			close(in.handover)
		})
	}()
	return nil
}

// load is the incoming step of the start: the disks served, the state
// loaded, the handover awaited. An error (or the source going away)
// makes create revert.
func (in *incoming) load(ctx context.Context, mig engine.Migratable) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in.cancel = cancel
	go func() {
		select {
		case <-in.aborted:
			cancel()
		case <-ctx.Done():
		}
	}()
	wait := 30 * time.Second
	if len(in.plan) > 0 {
		if err := in.serveDisks(ctx, mig); err != nil {
			return err
		}
		defer in.dm.StopServingDisks()
		if err := in.ctl.Send(migration.Reply{DisksReady: true, NBDKey: in.nbdKey}); err != nil {
			return err
		}
		// The memory stream follows the disk copy, however long.
		wait = 24 * time.Hour
	}
	in.tl.mark("incoming")
	f, relayed, err := in.awaitData(ctx, wait)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := in.loadState(ctx, mig, f, relayed); err != nil {
		return err
	}
	if err := in.awaitHandover(ctx); err != nil {
		return err
	}
	if len(in.plan) > 0 {
		in.dm.StopServingDisks()
	}
	return nil
}

// awaitData takes the data connection the source opens with the token.
func (in *incoming) awaitData(ctx context.Context, wait time.Duration) (*os.File, <-chan error, error) {
	var data net.Conn
	select {
	case data = <-in.dataCh:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("the source went away before sending the state")
	case <-time.After(wait):
		return nil, nil, fmt.Errorf("the source did not open the data connection within %v", wait)
	}
	// The stream must come the way the header said: a TLS migration
	// never accepts a plain connection.
	if _, isTCP := data.(*net.TCPConn); isTCP != in.hdr.Plain {
		data.Close()
		return nil, nil, fmt.Errorf("the data connection is not the kind announced (plain=%v)", in.hdr.Plain)
	}
	return migration.StreamFile(ctx, data, false)
}

// loadState has QEMU read the stream, saying "listening" once it does.
func (in *incoming) loadState(ctx context.Context, mig engine.Migratable, f *os.File, relayed <-chan error) error {
	var loaded atomic.Bool
	if relayed != nil {
		// A broken relay is a broken stream: stop loading (QEMU 7.2
		// may wait forever on a truncated one).
		go func() {
			if err := <-relayed; err != nil && !loaded.Load() {
				in.cancel()
			}
		}()
	}
	in.tl.mark("data")
	listening := func() {
		in.tl.mark("listening")
		if err := in.ctl.Send(migration.Reply{Listening: true}); err != nil {
			in.cancel()
		}
	}
	if err := mig.MigrateFrom(ctx, f, engine.IncomingOptions{Listening: listening}); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("the source stopped the migration: %w", err)
		}
		return err
	}
	loaded.Store(true)
	in.tl.mark("loaded")
	return nil
}

// awaitHandover: the guest runs only once the source hands it over
// (after the disk copies are final, with --with-storage).
func (in *incoming) awaitHandover(ctx context.Context) error {
	wait := time.Minute
	if len(in.plan) > 0 {
		wait = 5 * time.Minute
	}
	select {
	case <-in.handover:
		return nil
	default:
	}
	select {
	case <-in.handover:
	case <-ctx.Done():
		// A handover followed at once by the channel closing still
		// counts.
		select {
		case <-in.handover:
		default:
			return fmt.Errorf("the source stopped before handing the guest over")
		}
	case <-time.After(wait):
		return fmt.Errorf("the source did not hand the guest over within %v", wait)
	}
	return nil
}

// confirm tells the source the guest runs here.
func (in *incoming) confirm() error {
	if err := in.ctl.Send(migration.Reply{Running: true}); err != nil {
		// The source handed the guest over and keeps its copy paused
		// until told otherwise: ours is the one that runs.
		in.m.o.Log.Error("could not confirm a migration to the source; the guest runs here, the source keeps a paused copy", "name", in.spec.Name, "err", err)
		return err
	}
	in.tl.mark("confirmed")
	in.tl.log(in.m.o.Log, "domain migrated in", in.spec.Name)
	return nil
}
