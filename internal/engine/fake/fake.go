// Package fake is an in-memory engine: VMs that are only state, for
// testing what sits above the engine boundary (the domain manager)
// without root or QEMU. It keeps the contract engine.go documents (the
// conformance suite in engine/enginetest runs against it), and has knobs
// to make things go wrong: a Start that fails, an operation that fails,
// a guest that crashes, resets, powers off or ignores the power button.
//
// Its PIDs are made-up numbers and it reports no vCPU threads: nothing
// of a fake VM is a host process. Its serial port is a real unix socket
// (at RunDir/serial.sock), so a console can attach and read what a test
// makes the guest print (Instance.Print).
package fake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ringfence/ringfence/internal/engine"
)

// ErrGone is returned by Attach when the VM is no longer there.
var ErrGone = errors.New("fake: the VM is gone")

var (
	_ engine.Engine            = (*Engine)(nil)
	_ engine.OverheadEstimator = (*Engine)(nil)

	_ engine.Instance    = (*Instance)(nil)
	_ engine.Migratable  = (*Instance)(nil)
	_ engine.Relocatable = (*Instance)(nil)
)

// Op names an instance operation a test can make fail (Instance.Fail).
type Op string

const (
	OpResume     Op = "resume"
	OpPause      Op = "pause"
	OpPowerdown  Op = "powerdown"
	OpReset      Op = "reset"
	OpStatus     Op = "status"
	OpSetBalloon Op = "set-balloon"
	OpMigrate    Op = "migrate"
)

// Engine starts fake VMs. The zero value is not usable: call New.
type Engine struct {
	mu sync.Mutex
	// startErr, when set, is asked at every Start (see FailStart).
	startErr func(engine.LaunchSpec) error
	// started, when set, sees every new instance before Start returns.
	started  func(*Instance)
	overhead int
	vms      map[int]*vm // by pid, every VM ever started
	starts   []engine.LaunchSpec
	nextPID  int
}

// New returns an engine with no VMs.
func New() *Engine {
	return &Engine{vms: map[int]*vm{}, nextPID: 100000, overhead: 32}
}

// FailStart makes every following Start ask fn first: a non-nil error
// fails that Start, with nothing started. nil: Starts succeed again.
func (e *Engine) FailStart(fn func(engine.LaunchSpec) error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.startErr = fn
}

// OnStart calls fn with every instance started from now on, before Start
// returns (to set its knobs before anyone uses it). nil: none.
func (e *Engine) OnStart(fn func(*Instance)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.started = fn
}

// SetOverhead sets what OverheadMiB answers (32 at first).
func (e *Engine) SetOverhead(mib int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.overhead = mib
}

// Starts are the specs of every Start that succeeded, in order.
func (e *Engine) Starts() []engine.LaunchSpec {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]engine.LaunchSpec(nil), e.starts...)
}

// Live are handles of the VMs that have not ended, oldest first.
func (e *Engine) Live() []*Instance {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*Instance
	for pid := 100000; pid < e.nextPID; pid++ {
		if v := e.vms[pid]; v != nil && !v.isEnded() {
			out = append(out, v.handle())
		}
	}
	return out
}

// Forget drops every handle of the live VMs: they never deliver an exit
// (the handles of a daemon that died). The VMs run on, for Attach to
// re-find; a watcher of a dropped handle waits forever.
func (e *Engine) Forget() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, v := range e.vms {
		v.mu.Lock()
		v.handles = nil
		v.mu.Unlock()
	}
}

// Find is a handle of the live VM named name (nil: none).
func (e *Engine) Find(name string) *Instance {
	for _, i := range e.Live() {
		if i.vm.spec.Name == name {
			return i
		}
	}
	return nil
}

// Argv implements engine.Engine: a pretend command line.
func (e *Engine) Argv(s engine.LaunchSpec) ([]string, error) {
	if err := check(s); err != nil {
		return nil, err
	}
	argv := []string{"fake-vm", "-name", s.Name, "-m", fmt.Sprint(s.MemoryMiB), "-smp", fmt.Sprint(s.VCPUs)}
	if s.Kernel != "" {
		argv = append(argv, "-kernel", s.Kernel)
	}
	for _, d := range s.Disks {
		argv = append(argv, "-disk", d.ID+"="+d.Path)
	}
	return argv, nil
}

// check refuses what the QEMU engine refuses before it runs anything.
func check(s engine.LaunchSpec) error {
	if s.Accel != "kvm" && s.Accel != "tcg" {
		return fmt.Errorf("accelerator %q: must be kvm or tcg", s.Accel)
	}
	if s.MemoryMiB <= 0 || s.VCPUs <= 0 {
		return fmt.Errorf("memory and vcpus must be positive")
	}
	return nil
}

// OverheadMiB implements engine.OverheadEstimator: a fixed figure.
func (e *Engine) OverheadMiB(engine.LaunchSpec) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.overhead
}

// OverheadModel implements engine.OverheadEstimator.
func (e *Engine) OverheadModel(string) string { return "a fixed figure (fake engine)" }

// Start implements engine.Engine: the VM is made stopped (prelaunch, or
// incoming when the spec says so), with its serial socket listening.
func (e *Engine) Start(ctx context.Context, s engine.LaunchSpec) (engine.Instance, error) {
	if err := check(s); err != nil {
		return nil, err
	}
	e.mu.Lock()
	startErr, started := e.startErr, e.started
	e.mu.Unlock()
	if startErr != nil {
		if err := startErr(s); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v := &vm{spec: s, state: engine.RunPrelaunch, fails: map[Op]error{}, balloon: int64(s.MemoryMiB) << 20}
	if s.Incoming {
		v.state = engine.RunIncoming
	}
	if err := v.listen(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	v.pid = e.nextPID
	e.nextPID++
	e.vms[v.pid] = v
	e.starts = append(e.starts, s)
	e.mu.Unlock()
	inst := v.handle()
	if started != nil {
		started(inst)
	}
	return inst, nil
}

// stateBlob is what Instance.State persists.
type stateBlob struct {
	PID    int    `json:"pid"`
	Name   string `json:"name"`
	Serial string `json:"serial"`
}

// Attach implements engine.Engine: a new handle of a VM that runs.
func (e *Engine) Attach(_ context.Context, raw json.RawMessage) (engine.Instance, error) {
	var st stateBlob
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("decoding engine state: %w", err)
	}
	e.mu.Lock()
	v := e.vms[st.PID]
	e.mu.Unlock()
	if v == nil || v.isEnded() || v.spec.Name != st.Name {
		return nil, ErrGone
	}
	return v.handle(), nil
}

// vm is one fake VM; Instances are handles of it (a Start's, and one per
// Attach), each with its own Wait.
type vm struct {
	spec   engine.LaunchSpec
	pid    int
	serial string
	ln     net.Listener

	mu       sync.Mutex
	state    engine.RunState
	ended    bool
	exit     engine.Exit
	handles  []*Instance
	conns    []net.Conn
	fails    map[Op]error
	deaf     bool // ignores the power button
	balloon  int64
	migrated bool
}

// listen opens the serial socket: RunDir/serial.sock, or a short temporary
// path when that is too long for a unix socket.
func (v *vm) listen() error {
	p := filepath.Join(v.spec.RunDir, "serial.sock")
	if v.spec.RunDir == "" || len(p) > 100 {
		dir, err := os.MkdirTemp("", "fakevm")
		if err != nil {
			return err
		}
		p = filepath.Join(dir, "serial.sock")
	}
	os.Remove(p)
	ln, err := net.Listen("unix", p)
	if err != nil {
		return fmt.Errorf("fake serial port: %w", err)
	}
	v.serial, v.ln = p, ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			v.mu.Lock()
			if v.ended {
				c.Close()
			} else {
				v.conns = append(v.conns, c)
			}
			v.mu.Unlock()
			go io.Copy(io.Discard, c) // what is typed goes nowhere
		}
	}()
	return nil
}

func (v *vm) isEnded() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.ended
}

// handle makes a new handle; one made after the end gets the exit too.
func (v *vm) handle() *Instance {
	i := &Instance{vm: v, wait: make(chan engine.Exit, 1)}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.ended {
		i.wait <- v.exit
		close(i.wait)
		return i
	}
	v.handles = append(v.handles, i)
	return i
}

// end ends the VM once: every handle's Wait delivers ex. It reports
// whether this call ended it.
func (v *vm) end(ex engine.Exit) bool {
	v.mu.Lock()
	if v.ended {
		v.mu.Unlock()
		return false
	}
	v.ended, v.exit, v.state = true, ex, engine.RunOther
	hs, conns := v.handles, v.conns
	v.handles, v.conns = nil, nil
	v.mu.Unlock()
	v.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	os.Remove(v.serial)
	for _, h := range hs {
		h.wait <- ex
		close(h.wait)
	}
	return true
}

// Instance is a handle of a fake VM. Besides engine.Instance it has the
// knobs tests drive the guest with.
type Instance struct {
	vm   *vm
	wait chan engine.Exit
}

// Spec is the LaunchSpec the VM was started with.
func (i *Instance) Spec() engine.LaunchSpec { return i.vm.spec }

// Fail makes every following op fail with err (nil: succeed again).
func (i *Instance) Fail(op Op, err error) {
	i.vm.mu.Lock()
	defer i.vm.mu.Unlock()
	if err == nil {
		delete(i.vm.fails, op)
	} else {
		i.vm.fails[op] = err
	}
}

// IgnorePowerdown makes the guest ignore (or, false, answer) the ACPI
// power button.
func (i *Instance) IgnorePowerdown(ignore bool) {
	i.vm.mu.Lock()
	defer i.vm.mu.Unlock()
	i.vm.deaf = ignore
}

// Print writes s on the serial port, as the guest would.
func (i *Instance) Print(s string) {
	i.vm.mu.Lock()
	conns := append([]net.Conn(nil), i.vm.conns...)
	i.vm.mu.Unlock()
	for _, c := range conns {
		io.WriteString(c, s)
	}
}

// Connected reports whether something (a console) is attached to the
// serial port.
func (i *Instance) Connected() bool {
	i.vm.mu.Lock()
	defer i.vm.mu.Unlock()
	return len(i.vm.conns) > 0
}

// Ended reports whether the VM has ended.
func (i *Instance) Ended() bool { return i.vm.isEnded() }

// GuestPoweroff ends the VM as a guest that powered itself off.
func (i *Instance) GuestPoweroff() {
	i.vm.end(engine.Exit{Reason: engine.ExitPoweroff, Detail: "guest-shutdown"})
}

// GuestReboot ends the VM as a guest that reset itself (the VMM runs
// with no reboot: a reset ends it).
func (i *Instance) GuestReboot() {
	i.vm.end(engine.Exit{Reason: engine.ExitReboot, Detail: "guest-reset"})
}

// GuestPanic ends the VM as a guest that panicked.
func (i *Instance) GuestPanic() {
	i.vm.end(engine.Exit{Reason: engine.ExitCrash, Detail: "guest-panic"})
}

// Die ends the VM as a VMM that died with no shutdown event.
func (i *Instance) Die(detail string) {
	i.vm.end(engine.Exit{Reason: engine.ExitCrash, Detail: "qemu exited without a shutdown event: " + detail})
}

// End ends the VM with any exit.
func (i *Instance) End(ex engine.Exit) { i.vm.end(ex) }

func (i *Instance) PID() int                 { return i.vm.pid }
func (i *Instance) SerialPath() string       { return i.vm.serial }
func (i *Instance) VCPUThreads() []int       { return nil }
func (i *Instance) Wait() <-chan engine.Exit { return i.wait }

// Relocated implements engine.Relocatable: the VM is renamed with its
// run dir (its serial socket moved with the directory).
func (i *Instance) Relocated(runDir, _ string) {
	v := i.vm
	v.mu.Lock()
	defer v.mu.Unlock()
	if rel, err := filepath.Rel(v.spec.RunDir, v.serial); err == nil && !strings.HasPrefix(rel, "..") {
		v.serial = filepath.Join(runDir, rel)
	}
	v.spec.RunDir = runDir
	v.spec.Name = filepath.Base(runDir)
}

func (i *Instance) State() json.RawMessage {
	b, _ := json.Marshal(stateBlob{PID: i.vm.pid, Name: i.vm.spec.Name, Serial: i.vm.serial})
	return b
}

// op checks an operation may run: the VM is there and op is not made to
// fail. Caller holds vm.mu.
func (i *Instance) op(op Op) error {
	if i.vm.ended {
		return fmt.Errorf("%s: %w", op, ErrGone)
	}
	return i.vm.fails[op]
}

// move does op, moving the VM from one of the states in from to to.
func (i *Instance) move(op Op, to engine.RunState, from ...engine.RunState) error {
	i.vm.mu.Lock()
	defer i.vm.mu.Unlock()
	if err := i.op(op); err != nil {
		return err
	}
	for _, s := range from {
		if i.vm.state == s {
			i.vm.state = to
			return nil
		}
	}
	return fmt.Errorf("%s: the VM is %s", op, i.vm.state)
}

func (i *Instance) Resume(context.Context) error {
	return i.move(OpResume, engine.RunRunning, engine.RunPrelaunch, engine.RunPaused, engine.RunRunning)
}

// Pause stops the vCPUs; a VM whose vCPUs never ran stays prelaunch (as
// QEMU's stop leaves it).
func (i *Instance) Pause(context.Context) error {
	i.vm.mu.Lock()
	prelaunch := i.vm.state == engine.RunPrelaunch
	i.vm.mu.Unlock()
	if prelaunch {
		return i.move(OpPause, engine.RunPrelaunch, engine.RunPrelaunch)
	}
	return i.move(OpPause, engine.RunPaused, engine.RunRunning, engine.RunPaused)
}

// Powerdown presses the power button: a guest that listens (the default)
// powers off at once.
func (i *Instance) Powerdown(context.Context) error {
	i.vm.mu.Lock()
	err := i.op(OpPowerdown)
	answer := !i.vm.deaf && i.vm.state == engine.RunRunning
	i.vm.mu.Unlock()
	if err != nil {
		return err
	}
	if answer {
		go i.GuestPoweroff()
	}
	return nil
}

// Reset ends the VM with ExitReboot, as the QEMU engine's does.
func (i *Instance) Reset(context.Context) error {
	i.vm.mu.Lock()
	err := i.op(OpReset)
	i.vm.mu.Unlock()
	if err != nil {
		return err
	}
	go i.GuestReboot()
	return nil
}

// Kill ends the VM at once (ExitHost); it is idempotent.
func (i *Instance) Kill() error {
	i.vm.end(engine.Exit{Reason: engine.ExitHost, Detail: "host-signal"})
	return nil
}

func (i *Instance) Status(context.Context) (engine.RunState, error) {
	i.vm.mu.Lock()
	defer i.vm.mu.Unlock()
	if err := i.op(OpStatus); err != nil {
		return engine.RunOther, err
	}
	return i.vm.state, nil
}

func (i *Instance) SetBalloon(_ context.Context, bytes int64) error {
	i.vm.mu.Lock()
	defer i.vm.mu.Unlock()
	if err := i.op(OpSetBalloon); err != nil {
		return err
	}
	if !i.vm.spec.Balloon {
		return errors.New("no balloon device")
	}
	i.vm.balloon = min(bytes, int64(i.vm.spec.MemoryMiB)<<20)
	return nil
}

func (i *Instance) Balloon(context.Context) (int64, error) {
	i.vm.mu.Lock()
	defer i.vm.mu.Unlock()
	if err := i.op(""); err != nil {
		return 0, err
	}
	if !i.vm.spec.Balloon {
		return 0, errors.New("no balloon device")
	}
	return i.vm.balloon, nil
}

func (i *Instance) BlockStats(context.Context) ([]engine.BlockStats, error) {
	i.vm.mu.Lock()
	defer i.vm.mu.Unlock()
	if err := i.op(""); err != nil {
		return nil, err
	}
	var out []engine.BlockStats
	for _, d := range i.vm.spec.Disks {
		if !d.CDROM || d.Path != "" {
			out = append(out, engine.BlockStats{ID: d.ID})
		}
	}
	return out, nil
}

// streamMagic starts a fake migration stream.
const streamMagic = "fake-vm-state "

// MigrateTo implements engine.Migratable: it writes the VM's name and
// balloon size, and leaves the VM handed over.
func (i *Instance) MigrateTo(ctx context.Context, w *os.File, o engine.MigrateOptions) (engine.MigrationStats, error) {
	i.vm.mu.Lock()
	err := i.op(OpMigrate)
	if err == nil && i.vm.state != engine.RunRunning && i.vm.state != engine.RunPaused {
		err = fmt.Errorf("migrate: the VM is %s", i.vm.state)
	}
	blob := fmt.Sprintf("%s%s %d\n", streamMagic, i.vm.spec.Name, i.vm.balloon)
	i.vm.mu.Unlock()
	if err != nil {
		return engine.MigrationStats{}, err
	}
	if o.Start != nil {
		if err := o.Start(ctx); err != nil {
			return engine.MigrationStats{}, err
		}
	}
	if _, err := io.WriteString(w, blob); err != nil {
		return engine.MigrationStats{}, err
	}
	st := engine.MigrationStats{Status: "completed", TransferredB: int64(len(blob))}
	if o.Progress != nil {
		o.Progress(st)
	}
	i.vm.mu.Lock()
	if !i.vm.ended {
		i.vm.state = engine.RunHandedOver
	}
	i.vm.mu.Unlock()
	return st, nil
}

// MigrateFrom implements engine.Migratable: the VM must have been started
// incoming; it ends paused.
func (i *Instance) MigrateFrom(_ context.Context, r *os.File, o engine.IncomingOptions) error {
	i.vm.mu.Lock()
	err := i.op(OpMigrate)
	if err == nil && (i.vm.state != engine.RunIncoming || i.vm.migrated) {
		err = fmt.Errorf("incoming migration: the VM is %s, not waiting for its state", i.vm.state)
	}
	i.vm.mu.Unlock()
	if err != nil {
		return err
	}
	if o.Listening != nil {
		o.Listening()
	}
	var name string
	var balloon int64
	line, err := readLine(r)
	if err == nil {
		_, err = fmt.Sscanf(strings.TrimPrefix(line, streamMagic), "%s %d", &name, &balloon)
	}
	if err != nil || !strings.HasPrefix(line, streamMagic) {
		return fmt.Errorf("incoming migration: not a fake VM's state (%q): %v", line, err)
	}
	i.vm.mu.Lock()
	defer i.vm.mu.Unlock()
	if i.vm.ended {
		return ErrGone
	}
	i.vm.state, i.vm.migrated, i.vm.balloon = engine.RunPaused, true, balloon
	return nil
}

// readLine reads up to a newline, byte by byte (nothing past it is taken
// from r, which may carry more).
func readLine(r io.Reader) (string, error) {
	var b []byte
	c := make([]byte, 1)
	for len(b) < 4096 {
		n, err := r.Read(c)
		if n == 1 {
			if c[0] == '\n' {
				return string(b), nil
			}
			b = append(b, c[0])
		}
		if err != nil {
			return string(b), err
		}
	}
	return string(b), errors.New("line too long")
}
