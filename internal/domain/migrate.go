package domain

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
)

// Live migration between two daemons, over a connection the caller has
// already authenticated (mutual TLS). The protocol, one JSON line each
// way, then the stream:
//
//	source -> dest   {"spec":..., "accel":...}
//	dest -> source   {"ok":true}      (validated, admitted, QEMU waiting)
//	                 or {"error":...} (nothing was created)
//	source -> dest   QEMU's migration stream, then end-of-stream
//	dest -> source   {"running":true} (the guest runs on dest)
//	                 or {"error":...} (dest removed everything)
//
// The source lets go only after "running"; on any error before that it
// resumes its own copy, so the guest never runs on two hosts and never on
// none.

type migHeader struct {
	Spec  api.DomainSpec `json:"spec"`
	Accel string         `json:"accel"`
}

type migReply struct {
	OK      bool   `json:"ok,omitempty"`
	Running bool   `json:"running,omitempty"`
	Error   string `json:"error,omitempty"`
	Class   string `json:"class,omitempty"`
}

func writeLine(w io.Writer, v any) error {
	b, _ := json.Marshal(v)
	_, err := w.Write(append(b, '\n'))
	return err
}

// halfCloser is a connection whose write side can be closed alone.
type halfCloser interface{ CloseWrite() error }

// MigrateOut moves a running domain to the daemon at the other end of conn.
func (m *Manager) MigrateOut(ctx context.Context, name string, conn net.Conn, downtimeMs int, progress func(api.MigrationProgress)) (api.MigrationResult, error) {
	var res api.MigrationResult
	t0 := time.Now()
	d, err := m.lockRunning(name)
	if err != nil {
		return res, err
	}
	if d.migrating {
		d.mu.Unlock()
		return res, api.Errorf(api.ErrConflict, "%s is already being migrated", name)
	}
	d.migrating = true
	ctx, cancel := context.WithCancel(ctx)
	d.cancelMig = cancel
	inst, spec, accel := d.inst, d.rec.Spec, d.rec.Accel
	d.mu.Unlock()
	defer func() { cancel(); d.mu.Lock(); d.migrating = false; d.cancelMig = nil; d.mu.Unlock() }()
	mig, ok := inst.(engine.Migratable)
	if !ok {
		return res, api.Errorf(api.ErrUnavailable, "this engine cannot migrate domains")
	}

	br := bufio.NewReader(conn)
	if err := writeLine(conn, migHeader{Spec: spec, Accel: accel}); err != nil {
		return res, fmt.Errorf("talking to the destination: %w", err)
	}
	var rep migReply
	if err := readReply(br, &rep); err != nil {
		return res, fmt.Errorf("destination: %w", err)
	}
	if !rep.OK {
		return res, &api.RemoteError{Message: "destination refused: " + rep.Error, Class: rep.Class}
	}

	pr, pw, err := os.Pipe()
	if err != nil {
		return res, err
	}
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, pr)
		pr.Close()
		if hc, ok := conn.(halfCloser); ok && err == nil {
			err = hc.CloseWrite()
		}
		copied <- err
	}()
	stats, merr := mig.MigrateTo(ctx, pw, engine.MigrateOptions{DowntimeMs: downtimeMs, Progress: func(s engine.MigrationStats) {
		if progress != nil {
			progress(api.MigrationProgress(s))
		}
	}})
	if merr != nil {
		// Unblock the copy: QEMU may be stuck writing into a full pipe
		// behind a destination that stopped reading.
		conn.Close()
	}
	pw.Close()
	cerr := <-copied
	resume := func(why error) (api.MigrationResult, error) {
		// Only our copy may run: take it back.
		if st, err := inst.Status(context.Background()); err == nil && st != "running" {
			if rerr := inst.Resume(context.Background()); rerr != nil {
				m.o.Log.Error("resuming after a failed migration", "name", name, "err", rerr)
			}
		}
		return res, why
	}
	if merr != nil {
		conn.Close()
		if errors.Is(merr, context.Canceled) {
			return resume(api.Errorf(api.ErrConflict, "migration of %s cancelled; it keeps running here", name))
		}
		return resume(fmt.Errorf("migration failed, %s keeps running here: %w", name, merr))
	}
	if cerr != nil {
		return resume(fmt.Errorf("migration link failed, %s keeps running here: %w", name, cerr))
	}
	conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	if err := readReply(br, &rep); err != nil || !rep.Running {
		if err == nil {
			err = errors.New(rep.Error)
		}
		return resume(fmt.Errorf("the destination did not take over (%v); %s keeps running here", err, name))
	}
	// The destination runs the guest: let go of ours.
	if err := m.Destroy(context.Background(), name); err != nil {
		m.o.Log.Error("destroying the migrated-away copy", "name", name, "err", err)
	}
	res.TotalMs = time.Since(t0).Milliseconds()
	res.QEMUTotalMs = stats.TotalMs
	res.DowntimeMs = stats.DowntimeMs
	res.TransferredB = stats.TransferredB
	return res, nil
}

// CancelMigration stops an outgoing migration; the domain keeps running
// here.
func (m *Manager) CancelMigration(name string) error {
	d, err := m.get(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.migrating || d.cancelMig == nil {
		return api.Errorf(api.ErrConflict, "%s is not being migrated", name)
	}
	d.cancelMig()
	return nil
}

// loadStream feeds src into the VM through the pipe pr/pw. If the stream
// breaks, or ends and QEMU has not finished loading soon after (QEMU 7.2
// can spin on a truncated incoming stream instead of failing), the load is
// abandoned so the caller's revert removes the half-made domain.
func loadStream(ctx context.Context, mig engine.Migratable, pr, pw *os.File, src io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, err := io.Copy(pw, src)
		pw.Close()
		if err != nil {
			cancel()
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			cancel()
		}
	}()
	err := mig.MigrateFrom(ctx, pr)
	pr.Close()
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("the state stream broke or ended early: %w", err)
	}
	return err
}

func readReply(br *bufio.Reader, rep *migReply) error {
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("connection closed: %w", err)
	}
	*rep = migReply{}
	return json.Unmarshal(line, rep)
}

// MigrateIn receives a domain on conn (the destination side).
func (m *Manager) MigrateIn(ctx context.Context, conn net.Conn) error {
	br := bufio.NewReader(conn)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return err
	}
	var hdr migHeader
	fail := func(err error) error {
		_, class := api.StatusOf(err)
		writeLine(conn, migReply{Error: err.Error(), Class: class})
		return err
	}
	if err := json.Unmarshal(line, &hdr); err != nil {
		return fail(api.Errorf(api.ErrInvalid, "bad migration header: %v", err))
	}
	spec := hdr.Spec
	accel, err := m.validate(&spec)
	if err != nil {
		return fail(err)
	}
	if accel != hdr.Accel {
		return fail(api.Errorf(api.ErrInvalid, "%s runs under %s there and %s here: its CPU state cannot move", spec.Name, hdr.Accel, accel))
	}
	okSent := false
	incoming := func(ctx context.Context, mig engine.Migratable) error {
		pr, pw, err := os.Pipe()
		if err != nil {
			return err
		}
		if err := writeLine(conn, migReply{OK: true}); err != nil {
			return err
		}
		okSent = true
		return loadStream(ctx, mig, pr, pw, br)
	}
	if _, err := m.create(ctx, spec, accel, startOpts{incoming: incoming}); err != nil {
		if !okSent {
			return fail(err)
		}
		writeLine(conn, migReply{Error: err.Error()})
		return err
	}
	if err := writeLine(conn, migReply{Running: true}); err != nil {
		// The source cannot know we run it; it will resume its copy, so ours
		// must go.
		m.o.Log.Error("could not confirm a migration; destroying the incoming copy", "name", spec.Name, "err", err)
		m.Destroy(context.Background(), spec.Name)
		return err
	}
	m.o.Log.Info("domain migrated in", "name", spec.Name)
	return nil
}
