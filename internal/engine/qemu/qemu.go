// Package qemu runs domains as QEMU processes and speaks QMP to them.
//
// A QEMU is started in its own session so it outlives the daemon; its
// identity (pid + kernel start time) is persisted so a restarted daemon
// can re-attach through the QMP socket (Attach).
package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/engine/qemu/qmp"
	"github.com/ringfence/ringfence/internal/launch"
	"github.com/ringfence/ringfence/internal/procfs"
)

// ErrGone is returned by Attach when the QEMU is no longer running.
var ErrGone = errors.New("qemu process is gone")

// The QEMU engine implements the whole engine boundary, optional parts
// included: a signature slip would otherwise switch a feature off
// silently (the domain core asks for them by type assertion).
var (
	_ engine.Engine            = (*Engine)(nil)
	_ engine.OverheadEstimator = (*Engine)(nil)

	_ engine.Instance            = (*instance)(nil)
	_ engine.Migratable          = (*instance)(nil)
	_ engine.DiskMigrator        = (*instance)(nil)
	_ engine.DiskLocker          = (*instance)(nil)
	_ engine.DiskSnapshotter     = (*instance)(nil)
	_ engine.InternalSnapshotter = (*instance)(nil)
	_ engine.DiskBackup          = (*instance)(nil)
	_ engine.BlockHotplug        = (*instance)(nil)
	_ engine.VNCDisplay          = (*instance)(nil)
)

// Engine launches QEMU.
type Engine struct {
	Binary string // qemu-system-x86_64
	// Launcher is the argv prefix of the program that joins cgroups and
	// execs QEMU (launch.Prefix); needed when a LaunchSpec has CgroupProcs.
	Launcher []string
	// QMPTimeout bounds every monitor command that has no deadline of its
	// own (0: qmp.DefaultTimeout).
	QMPTimeout time.Duration
}

// New returns an engine for the given binary ("" = qemu-system-x86_64 in PATH).
func New(bin string) *Engine {
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	return &Engine{Binary: bin}
}

// Version returns the first line of `qemu --version`.
func (e *Engine) Version() (string, error) {
	out, err := exec.Command(e.Binary, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("running %s --version: %w (install qemu-system-x86)", e.Binary, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimPrefix(line, "QEMU emulator version "), nil
}

// Argv implements engine.Engine.
func (e *Engine) Argv(s engine.LaunchSpec) ([]string, error) { return argv(e.Binary, s) }

// state is what we persist to re-attach.
type state struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
	RunDir    string `json:"run_dir"`
	LogFile   string `json:"log_file,omitempty"`
	VCPUs     []int  `json:"vcpu_threads"`
}

// logFile is where this QEMU logs (older states: its run dir).
func (s state) logFile() string {
	if s.LogFile != "" {
		return s.LogFile
	}
	return logPath(s.RunDir)
}

type instance struct {
	st      state
	mon     *qmp.Monitor
	exited  chan struct{} // closed when the process is gone
	waitCh  chan engine.Exit
	once    sync.Once
	mu      sync.Mutex
	lastEvt string // last SHUTDOWN reason or GUEST_PANICKED
	// sets are the fd sets of disks and media added while running (by
	// disk ID, "cd-<id>" for media), removed with them.
	setMu sync.Mutex
	sets  map[string]int
	// pskDir is the NBD server's key dir while it serves disks.
	pskDir string
	// agentMu serializes guest agent calls.
	agentMu sync.Mutex
}

// Start implements engine.Engine.
func (e *Engine) Start(ctx context.Context, s engine.LaunchSpec) (engine.Instance, error) {
	cmd, logFile, release, err := e.command(s)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", e.Binary, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()

	inst := &instance{st: state{PID: cmd.Process.Pid, RunDir: s.RunDir, LogFile: logFile}, exited: exited, waitCh: make(chan engine.Exit, 1)}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-dctx.Done():
		}
	}()
	if err := e.attach(ctx, dctx, inst, s.RunDir); err != nil {
		cmd.Process.Kill()
		<-exited
		return nil, err
	}
	inst.watch()
	return inst, nil
}

// command opens the domain's disks and QEMU's log and makes the command
// that runs QEMU on them (through the launcher when it joins cgroups).
// release closes the parent's copies once QEMU is up or has failed.
func (e *Engine) command(s engine.LaunchSpec) (cmd *exec.Cmd, logFile string, release func(), err error) {
	// An incoming migration's images are still the source's (same storage):
	// its locks are taken after the handover (DiskLocker).
	files, fds, err := openDisks(s.Disks, !s.Incoming)
	if err != nil {
		return nil, "", nil, err
	}
	closeFiles := func() {
		for _, f := range files {
			f.Close()
		}
	}
	args, err := argvFDs(e.Binary, s, fds)
	if err != nil {
		closeFiles()
		return nil, "", nil, err
	}
	logFile = s.LogFile
	if logFile == "" {
		logFile = logPath(s.RunDir)
	}
	logf, err := openLog(logFile)
	if err != nil {
		closeFiles()
		return nil, "", nil, fmt.Errorf("opening QEMU's log: %w", err)
	}
	release = func() { logf.Close(); closeFiles() }
	if len(s.CgroupProcs) > 0 {
		if len(e.Launcher) == 0 {
			release()
			return nil, "", nil, fmt.Errorf("cgroups asked for but no launcher binary is set")
		}
		args = launch.Command(e.Launcher, s.CgroupProcs, args)
	}
	cmd = exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// glibc gives each thread that allocates an arena of its own; QEMU's
	// I/O worker threads (up to 64) then hold tens of MiB of heap the
	// domain's memory limit must also hold. Two arenas keep the heap to
	// what QEMU uses.
	cmd.Env = append(os.Environ(), "MALLOC_ARENA_MAX=2")
	cmd.Dir = s.RunDir
	cmd.ExtraFiles = files // fds 3.. in order, kept across the launcher's exec
	// Own session: a daemon restart or a ^C on the daemon's terminal must
	// not take the guests with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd, logFile, release, nil
}

// attach connects to the new QEMU's monitor (dialling within dctx, which
// ends when QEMU does) and reads what inst needs of it; an error leaves
// QEMU for the caller to kill.
func (e *Engine) attach(ctx, dctx context.Context, inst *instance, runDir string) error {
	mon, err := qmp.Dial(dctx, qmpPath(runDir))
	if mon != nil {
		mon.Timeout = e.QMPTimeout
	}
	if err != nil {
		// QEMU may accept the monitor connection and then exit on a bad
		// device; its own message is the useful error.
		select {
		case <-inst.exited:
			return fmt.Errorf("qemu exited at start: %s", tailLog(inst.st.LogFile))
		case <-time.After(2 * time.Second):
		}
		return err
	}
	inst.mon = mon
	if st, err := procfs.ReadStat(inst.st.PID, 0); err == nil {
		inst.st.StartTime = st.StartTime
	}
	if err := inst.loadVCPUs(ctx); err != nil {
		mon.Close()
		return err
	}
	return nil
}

// logMax is where QEMU's log is rotated (to LOG.1) at a start.
const logMax = 4 << 20

// openLog opens QEMU's log for appending (it outlives the domain: why a
// guest died stays readable), rotating it once it has grown past logMax,
// and marks where this incarnation starts.
func openLog(path string) (*os.File, error) {
	if fi, err := os.Stat(path); err == nil && fi.Size() > logMax {
		os.Rename(path, path+".1")
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "--- %s: QEMU starting\n", time.Now().UTC().Format(time.RFC3339))
	return f, nil
}

// tailLog returns QEMU's last lines of this incarnation, which name a bad
// option or why it ended.
func tailLog(path string) string {
	b, _ := os.ReadFile(path)
	if i := strings.LastIndex(string(b), ": QEMU starting\n"); i >= 0 {
		b = b[i+len(": QEMU starting\n"):]
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 600 {
		s = s[len(s)-600:]
	}
	if s == "" {
		return "no output"
	}
	return s
}

// noteInLog adds the daemon's own line to QEMU's log, where an admin
// reading why a domain ended looks.
func noteInLog(path, line string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", time.Now().UTC().Format(time.RFC3339), line)
}

// Attach implements engine.Engine.
func (e *Engine) Attach(ctx context.Context, raw json.RawMessage) (engine.Instance, error) {
	var st state
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("decoding engine state: %w", err)
	}
	if !procfs.Alive(st.PID, st.StartTime) {
		return nil, ErrGone
	}
	pidfd, err := unix.PidfdOpen(st.PID, 0)
	if err != nil {
		return nil, ErrGone
	}
	exited := make(chan struct{})
	go func() {
		// The old daemon was its parent, so we cannot wait(); a pidfd
		// becomes readable when the process ends.
		defer unix.Close(pidfd)
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, -1)
			if err == unix.EINTR {
				continue
			}
			if n > 0 || err != nil {
				break
			}
		}
		close(exited)
	}()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	mon, err := qmp.Dial(dctx, qmpPath(st.RunDir))
	if mon != nil {
		mon.Timeout = e.QMPTimeout
	}
	if err != nil {
		return nil, fmt.Errorf("re-attaching to pid %d: %w", st.PID, err)
	}
	inst := &instance{st: st, mon: mon, exited: exited, waitCh: make(chan engine.Exit, 1)}
	if err := inst.loadVCPUs(ctx); err != nil {
		mon.Close()
		return nil, err
	}
	inst.watch()
	return inst, nil
}

func (i *instance) loadVCPUs(ctx context.Context) error {
	cpus, err := i.mon.QueryCPUs(ctx)
	if err != nil {
		return err
	}
	// A fresh slice: VCPUThreads and State may be reading the old one
	// (vcpu-set reloads it while the domain runs).
	tids := make([]int, 0, len(cpus))
	for _, c := range cpus {
		tids = append(tids, c.ThreadID)
	}
	i.mu.Lock()
	i.st.VCPUs = tids
	i.mu.Unlock()
	return nil
}

// exitGrace is how long QEMU may take to exit after its SHUTDOWN event
// (it flushes and closes its disks) before it is killed: a QEMU stuck in
// its cleanup must not keep a domain from its on_* action.
var exitGrace = 20 * time.Second

// watch records why the guest stopped and reports the exit once the
// process is gone.
func (i *instance) watch() {
	events, _ := i.mon.Subscribe()
	// drained closes once every event QEMU wrote before it went has been
	// read; shutdown once it said it is going.
	drained, shutdown := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(drained)
		var once sync.Once
		for ev := range events {
			switch ev.Name {
			case "SHUTDOWN":
				var d struct {
					Reason string `json:"reason"`
				}
				json.Unmarshal(ev.Data, &d)
				i.mu.Lock()
				if i.lastEvt != "guest-panic" {
					i.lastEvt = d.Reason
				}
				i.mu.Unlock()
				once.Do(func() { close(shutdown) })
			case "GUEST_PANICKED":
				i.mu.Lock()
				i.lastEvt = "guest-panic"
				i.mu.Unlock()
			}
		}
	}()
	go func() {
		select {
		case <-i.exited:
		case <-i.mon.Done():
			// The monitor closes a moment before the process is reaped.
			select {
			case <-i.exited:
			case <-time.After(10 * time.Second):
				i.Kill()
				<-i.exited
			}
		case <-shutdown:
			select {
			case <-i.exited:
			case <-time.After(exitGrace):
				noteInLog(i.st.logFile(), fmt.Sprintf("ringfence: QEMU had not exited %s after its SHUTDOWN event: killed", exitGrace))
				i.Kill()
				<-i.exited
			}
		}
		// The process can be reaped before the monitor's last lines (the
		// SHUTDOWN event saying why) are read: read them first.
		select {
		case <-drained:
		case <-time.After(5 * time.Second):
		}
		i.mon.Close()
		i.mu.Lock()
		reason := i.lastEvt
		i.mu.Unlock()
		ex := engine.Exit{Detail: reason}
		switch reason {
		case "guest-shutdown":
			ex.Reason = engine.ExitPoweroff
		case "guest-reset", "host-qmp-system-reset":
			ex.Reason = engine.ExitReboot
		case "guest-panic":
			ex.Reason = engine.ExitCrash
		case "host-qmp-quit", "host-signal", "host-ui":
			ex.Reason = engine.ExitHost
		default:
			ex.Reason = engine.ExitCrash
			ex.Detail = "qemu exited without a shutdown event: " + tailLog(i.st.logFile())
		}
		i.waitCh <- ex
		close(i.waitCh)
	}()
}

func (i *instance) PID() int           { return i.st.PID }
func (i *instance) SerialPath() string { return serialPath(i.st.RunDir) }
func (i *instance) VNCPath() string    { return vncPath(i.st.RunDir) }
func (i *instance) VCPUThreads() []int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]int(nil), i.st.VCPUs...)
}
func (i *instance) Wait() <-chan engine.Exit { return i.waitCh }

func (i *instance) State() json.RawMessage {
	i.mu.Lock()
	b, _ := json.Marshal(i.st)
	i.mu.Unlock()
	return b
}

func (i *instance) Resume(ctx context.Context) error { return i.mon.Execute(ctx, "cont", nil, nil) }
func (i *instance) Pause(ctx context.Context) error  { return i.mon.Execute(ctx, "stop", nil, nil) }
func (i *instance) Powerdown(ctx context.Context) error {
	return i.mon.Execute(ctx, "system_powerdown", nil, nil)
}

func (i *instance) Reset(ctx context.Context) error {
	// With -no-reboot a reset ends QEMU; mark it so Wait says reboot.
	i.mu.Lock()
	i.lastEvt = "guest-reset"
	i.mu.Unlock()
	err := i.mon.Execute(ctx, "system_reset", nil, nil)
	if errors.Is(err, qmp.ErrClosed) {
		return nil
	}
	return err
}

func (i *instance) Status(ctx context.Context) (engine.RunState, error) {
	s, err := i.mon.QueryStatus(ctx)
	return runState(s.Status), err
}

// runState maps QMP's RunState strings (qapi/run-state.json) to the
// engine's: only the ones the manager acts on are told apart.
func runState(s string) engine.RunState {
	switch s {
	case "running":
		return engine.RunRunning
	case "prelaunch":
		return engine.RunPrelaunch
	case "paused":
		return engine.RunPaused
	case "inmigrate":
		return engine.RunIncoming
	case "postmigrate", "finish-migrate":
		return engine.RunHandedOver
	}
	return engine.RunOther
}

// Kill sends SIGKILL, checking first that the pid is still our QEMU.
func (i *instance) Kill() error {
	select {
	case <-i.exited:
		return nil
	default:
	}
	if !procfs.Alive(i.st.PID, i.st.StartTime) {
		return nil
	}
	i.mu.Lock()
	if i.lastEvt == "" {
		i.lastEvt = "host-signal"
	}
	i.mu.Unlock()
	err := syscall.Kill(i.st.PID, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// SetVNCPassword sets the password of a VNC server started with
// password=on (over QMP: it never appears on QEMU's command line, which
// every host user can read).
func (i *instance) SetVNCPassword(ctx context.Context, password string) error {
	return i.mon.Execute(ctx, "set_password", map[string]any{"protocol": "vnc", "password": password}, nil)
}

func (i *instance) SetBalloon(ctx context.Context, bytes int64) error {
	return i.mon.Execute(ctx, "balloon", map[string]any{"value": bytes}, nil)
}

func (i *instance) Balloon(ctx context.Context) (int64, error) {
	var r struct {
		Actual int64 `json:"actual"`
	}
	err := i.mon.Execute(ctx, "query-balloon", nil, &r)
	return r.Actual, err
}

func (i *instance) BlockStats(ctx context.Context) ([]engine.BlockStats, error) {
	var r []struct {
		QDev  string `json:"qdev"`
		Stats struct {
			RdOps   int64 `json:"rd_operations"`
			WrOps   int64 `json:"wr_operations"`
			RdBytes int64 `json:"rd_bytes"`
			WrBytes int64 `json:"wr_bytes"`
		} `json:"stats"`
	}
	if err := i.mon.Execute(ctx, "query-blockstats", nil, &r); err != nil {
		return nil, err
	}
	var out []engine.BlockStats
	for _, b := range r {
		// qdev is the device path, e.g. /machine/peripheral/vda/virtio-backend
		id := strings.TrimPrefix(b.QDev, "/machine/peripheral/")
		id, _, _ = strings.Cut(id, "/")
		out = append(out, engine.BlockStats{ID: id, ReadOps: b.Stats.RdOps, WriteOps: b.Stats.WrOps, ReadBytes: b.Stats.RdBytes, WriteBytes: b.Stats.WrBytes})
	}
	return out, nil
}

// openDisks opens every disk image for QEMU: read-only, and read-write too
// unless the disk is read-only (QEMU picks the descriptor whose mode
// matches each open it does).
func openDisks(disks []engine.Disk, lock bool) ([]*os.File, map[string]diskFD, error) {
	var files []*os.File
	fds := map[string]diskFD{}
	fail := func(err error) ([]*os.File, map[string]diskFD, error) {
		for _, f := range files {
			f.Close()
		}
		return nil, nil, err
	}
	for i, d := range disks {
		if d.Path == "" {
			continue
		}
		modes := []int{os.O_RDONLY}
		if !d.ReadOnly && !d.CDROM {
			modes = append(modes, os.O_RDWR)
		}
		fd := diskFD{set: i + 1}
		if fi, err := os.Stat(d.Path); err == nil && fi.Mode()&os.ModeDevice != 0 {
			fd.block = true
		}
		for _, m := range modes {
			f, err := openImage(d.Path, m, fd.block && m == os.O_RDWR && lock)
			if err != nil {
				return fail(fmt.Errorf("disk %s: %w", d.ID, err))
			}
			fd.fds = append(fd.fds, 3+len(files))
			files = append(files, f)
		}
		// One description carries the locks (two would conflict): the
		// last opened, read-write when the disk is writable.
		if lock {
			if err := lockImage(files[len(files)-1], d); err != nil {
				return fail(err)
			}
		}
		fds[d.ID] = fd
	}
	return files, fds, nil
}
