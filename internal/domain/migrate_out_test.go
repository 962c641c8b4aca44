package domain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/migration"
	"github.com/ringfence/ringfence/internal/store"
)

// fakeSource is a running VM as the source side of a migration uses it:
// the rest of engine.Instance is never called there.
type fakeSource struct {
	engine.Instance
	state   atomic.Int32 // engine.RunState
	resumed atomic.Int32
}

func (f *fakeSource) PID() int { return 0 }

func (f *fakeSource) Status(context.Context) (engine.RunState, error) {
	return engine.RunState(f.state.Load()), nil
}

func (f *fakeSource) Resume(context.Context) error {
	f.resumed.Add(1)
	f.state.Store(int32(engine.RunRunning))
	return nil
}

// MigrateTo sends once the destination listens, and stops the VM.
func (f *fakeSource) MigrateTo(ctx context.Context, w *os.File, o engine.MigrateOptions) (engine.MigrationStats, error) {
	if err := o.Start(ctx); err != nil {
		return engine.MigrationStats{}, err
	}
	io.WriteString(w, "the state")
	f.state.Store(int32(engine.RunHandedOver))
	return engine.MigrationStats{TransferredB: 9}, nil
}

func (f *fakeSource) MigrateFrom(context.Context, *os.File, engine.IncomingOptions) error {
	return errors.New("not a destination")
}

// migrateToFake runs MigrateOut against a scripted destination: it
// answers the header with ok (or refuses), says listening (or closes),
// and after "go" does what atGo says.
func migrateToFake(t *testing.T, refuse, closeEarly bool, atGo func(c net.Conn)) (*fakeSource, *Manager, error) {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := New(Options{Store: st, Ledger: host.NewLedger(4096, 512, 2, 1), RunDir: t.TempDir(), StateDir: t.TempDir(), LogDir: t.TempDir()})
	f := &fakeSource{}
	f.state.Store(int32(engine.RunRunning))
	m.doms["mover"] = &dom{inst: f, rec: record{Spec: api.DomainSpec{Name: "mover", MaxMemMiB: 64, MaxVCPUs: 1}, State: api.StateRunning}}
	ctl, dst := net.Pipe()
	t.Cleanup(func() { ctl.Close(); dst.Close() })
	go fakeDest(dst, refuse, closeEarly, atGo)
	p := MigrationPeer{Control: ctl, DialData: func(ctx context.Context, token string, plain bool) (net.Conn, error) {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		go io.Copy(io.Discard, b)
		return a, nil
	}}
	_, err = m.MigrateOut(context.Background(), "mover", p, MigrateOptions{DowntimeMs: 30}, nil)
	return f, m, err
}

func fakeDest(c net.Conn, refuse, closeEarly bool, atGo func(c net.Conn)) {
	defer c.Close()
	ctl := migration.NewControl(c)
	if _, err := ctl.ReadHeader(time.Second); err != nil {
		return
	}
	if refuse {
		ctl.Refuse(api.Errorf(api.ErrUnavailable, "no room here"))
		return
	}
	ctl.Send(migration.Reply{OK: true, Token: "0123456789abcdef"})
	if closeEarly {
		return
	}
	ctl.Send(migration.Reply{Listening: true})
	ctl.AwaitGo(func(migration.Go) { atGo(c); c.Close() })
}

// The handover rules, from the source: after "go" only the destination
// decides. Silence leaves our copy paused (never resumed on a guess); an
// explicit error resumes it. Before "go" any failure resumes it.
func TestMigrateOutHandoverRules(t *testing.T) {
	for _, tc := range []struct {
		name          string
		refuse, early bool
		atGo          func(c net.Conn)
		want          string
		wantRunning   bool // the VM's vCPUs run here afterwards
		wantState     api.State
	}{
		{name: "refused: nothing started", refuse: true, want: "destination refused: no room here", wantRunning: true, wantState: api.StateRunning},
		{name: "destination gone before go: keeps running", early: true, want: "the destination failed (connection closed", wantRunning: true, wantState: api.StateRunning},
		{name: "error after go: resumed", atGo: func(c net.Conn) { fmt.Fprintln(c, `{"error":"could not start"}`) },
			want: "the destination did not take over (could not start); mover keeps running here", wantRunning: true, wantState: api.StateRunning},
		{name: "silence after go: paused, not resumed", atGo: func(net.Conn) {},
			want: "lost contact with the destination after handing mover over", wantState: api.StatePaused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, m, err := migrateToFake(t, tc.refuse, tc.early, tc.atGo)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if got := engine.RunState(f.state.Load()) == engine.RunRunning; got != tc.wantRunning {
				t.Fatalf("running here=%v (resumed %d times), want %v", got, f.resumed.Load(), tc.wantRunning)
			}
			d := m.doms["mover"]
			if d.rec.State != tc.wantState || d.migrating {
				t.Fatalf("state %s (migrating=%v), want %s", d.rec.State, d.migrating, tc.wantState)
			}
		})
	}
}
