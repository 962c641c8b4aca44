// Package e2e runs the real ringfence binary: a real daemon in a temporary
// state dir inside a network namespace made for the test, real QEMU/TCG
// guests booting the default image, the real serial console and store.
// Every test cleans up and fails if a QEMU, tap or namespace is left.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
	"github.com/ringfence/ringfence/internal/image"
)

var (
	binPath  string
	imgPaths image.Paths
)

func TestMain(m *testing.M) {
	if ep := os.Getenv(etcdProbeEnv); ep != "" {
		os.Exit(etcdProbe(ep)) // a re-run of this binary in a host's namespace
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// A missing prerequisite fails the run: a green suite that booted
	// nothing would lie.
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: must run as root (the daemon creates taps and namespaces)")
		return 1
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: qemu-system-x86_64 missing: run `make deps`")
		return 1
	}
	dir, err := os.MkdirTemp("", "rf-e2e-bin-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "ringfence")
	out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/ringfence").CombinedOutput()
	if err == nil {
		// The daemon's QEMU launcher, found beside the binary.
		out, err = exec.Command("go", "build", "-o", filepath.Join(dir, "ringfence-launch"), "../../cmd/ringfence-launch").CombinedOutput()
	}
	if err == nil {
		// The fence guard's own small binary, found beside it too.
		out, err = exec.Command("go", "build", "-o", filepath.Join(dir, "ringfence-guard"), "../../cmd/ringfence-guard").CombinedOutput()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building ringfence: %v\n%s", err, out)
		return 1
	}
	imgDir := os.Getenv("RINGFENCE_IMAGE_DIR")
	if imgDir == "" {
		imgDir = "/var/lib/ringfence/images/default"
	}
	imgPaths = image.PathsIn(imgDir)
	if !imgPaths.Built() {
		cmd := exec.Command(binPath, "image", "default", "--dir", imgDir)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: building the default image: %v\n", err)
			return 1
		}
	}
	return m.Run()
}

// Env is one daemon in its own state dir and network namespace.
type Env struct {
	t   *testing.T
	Dir string // the test's scratch dir: domain files and images go here
	// State is the daemon's state dir (inside Dir; the disk policy refuses
	// guest images in it, as it would on a host).
	State      string
	Netns      string
	Socket     string
	Client     *client.Client
	daemon     *exec.Cmd
	names      []string // domains the test made, for the cgroup leftover check
	serveArgs  []string
	daemonDone chan struct{}
	// DaemonEnv is added to the daemon's environment at its next start
	// (RINGFENCE_CRASHPOINT=...).
	DaemonEnv []string
}

var nsSeq int

// NewEnv starts a daemon for the test. Paths are short on purpose: unix
// socket paths are limited to 108 bytes.
func NewEnv(t *testing.T, serveArgs ...string) *Env {
	t.Helper()
	return NewEnvWith(t, EnvOptions{ServeArgs: serveArgs})
}

// EnvOptions tune NewEnvWith.
type EnvOptions struct {
	ServeArgs []string
	Netns     string           // share another env's namespace (for peers)
	Before    func(dir string) // runs before the daemon starts (dir: the env's scratch dir)
}

// NewEnvWith starts a daemon with options.
func NewEnvWith(t *testing.T, o EnvOptions) *Env {
	t.Helper()
	serveArgs := o.ServeArgs
	dir, err := os.MkdirTemp("/tmp", "rf")
	if err != nil {
		t.Fatal(err)
	}
	ns := o.Netns
	if ns == "" {
		nsSeq++
		ns = fmt.Sprintf("rft%d-%d", os.Getpid(), nsSeq)
		mustRun(t, "ip", "netns", "add", ns)
		mustRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	if o.Before != nil {
		o.Before(dir)
	}
	e := &Env{t: t, Dir: dir, State: filepath.Join(dir, "state"), Netns: ns, Socket: filepath.Join(dir, "run", "ringfence.sock"), serveArgs: serveArgs}
	e.Client = client.New(e.Socket)
	t.Cleanup(e.cleanup)
	e.StartDaemon()
	return e
}

// StartDaemon runs `ringfence serve` inside the env's namespace.
func (e *Env) StartDaemon() {
	e.t.Helper()
	logf, err := os.OpenFile(filepath.Join(e.Dir, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	// nsenter joins only the network namespace: `ip netns exec` would also
	// remount /sys and hide the cgroup hierarchies the daemon needs.
	args := append([]string{"--net=/run/netns/" + e.Netns, binPath, "--socket", e.Socket, "serve", "--state-dir", e.State, "--run-dir", filepath.Join(e.Dir, "run")}, e.serveArgs...)
	cmd := exec.Command("nsenter", args...)
	cmd.Env = append(os.Environ(), e.DaemonEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	logf.Close()
	e.daemon = cmd
	e.daemonDone = make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(e.daemonDone)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := e.Client.Host(context.Background()); err == nil {
			return
		}
		select {
		case <-e.daemonDone:
			e.t.Fatalf("daemon exited at start:\n%s", e.DaemonLog())
		case <-time.After(20 * time.Millisecond):
		}
	}
	e.t.Fatalf("daemon did not answer within 15s:\n%s", e.DaemonLog())
}

// StartDaemonFails starts the daemon expecting it to refuse to start; it
// returns what it printed at this start.
func (e *Env) StartDaemonFails() string {
	e.t.Helper()
	args := append([]string{"--net=/run/netns/" + e.Netns, binPath, "--socket", e.Socket, "serve", "--state-dir", e.State, "--run-dir", filepath.Join(e.Dir, "run")}, e.serveArgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nsenter", args...).CombinedOutput()
	if err == nil || ctx.Err() != nil {
		e.t.Fatalf("the daemon started (or hung) where it must refuse: err=%v\n%s", err, out)
	}
	return string(out)
}

// WaitDaemonGone waits for the daemon to exit by itself (a crash point).
func (e *Env) WaitDaemonGone(timeout time.Duration) {
	e.t.Helper()
	select {
	case <-e.daemonDone:
		e.daemon = nil
	case <-time.After(timeout):
		e.t.Fatalf("the daemon did not die within %s:\n%s", timeout, tail(e.DaemonLog(), 3000))
	}
}

// ListAll returns every domain, the defined stopped ones too.
func (e *Env) ListAll() []api.Domain {
	e.t.Helper()
	ds, err := e.Client.ListAll(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return ds
}

// KillDaemon kills the daemon with SIGKILL, as a crash would.
func (e *Env) KillDaemon() {
	e.t.Helper()
	if e.daemon == nil {
		return
	}
	// nsenter execs the daemon, so the pid is the daemon's own.
	syscall.Kill(e.daemon.Process.Pid, syscall.SIGKILL)
	<-e.daemonDone
	e.daemon = nil
}

// StopDaemon stops the daemon politely.
func (e *Env) StopDaemon() {
	if e.daemon == nil {
		return
	}
	syscall.Kill(e.daemon.Process.Pid, syscall.SIGTERM)
	select {
	case <-e.daemonDone:
	case <-time.After(10 * time.Second):
		syscall.Kill(e.daemon.Process.Pid, syscall.SIGKILL)
		<-e.daemonDone
	}
	e.daemon = nil
}

// DaemonLog returns the daemon's log.
func (e *Env) DaemonLog() string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, "daemon.log"))
	return string(b)
}

// Result of one CLI run.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// RF runs the ringfence CLI against this env's daemon.
func (e *Env) RF(args ...string) Result {
	e.t.Helper()
	return runCLI(e.t, nil, nil, append([]string{"--socket", e.Socket}, args...)...)
}

// runCLI runs the ringfence CLI with args, under wrap (e.g. nsenter) when
// given, with env as its whole environment when not nil.
func runCLI(t *testing.T, wrap, env []string, args ...string) Result {
	t.Helper()
	// No CLI call in a test may hang the suite.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	argv := append(append(wrap[:len(wrap):len(wrap)], binPath), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running ringfence %v: %v", args, err)
	}
	return Result{so.String(), se.String(), code}
}

// MustRF runs the CLI and fails the test on a non-zero exit.
func (e *Env) MustRF(args ...string) string {
	e.t.Helper()
	r := e.RF(args...)
	if r.Code != 0 {
		e.t.Fatalf("ringfence %s: exit %d\nstdout: %s\nstderr: %s\ndaemon log:\n%s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr, e.DaemonLog())
	}
	return r.Stdout
}

// WriteConfig writes a domain file built on the default image.
func (e *Env) WriteConfig(name string, extra string) string {
	e.t.Helper()
	cfg := fmt.Sprintf(`name = "%s"
kernel = "%s"
ramdisk = "%s"
memory = 128
vcpus = 1
extra = "console=hvc0"
%s
`, name, imgPaths.Kernel, imgPaths.Initrd, extra)
	e.names = append(e.names, name)
	p := filepath.Join(e.Dir, name+".cfg")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// List returns the daemon's domains.
func (e *Env) List() []api.Domain {
	e.t.Helper()
	var ds []api.Domain
	if err := json.Unmarshal([]byte(e.MustRF("list", "--json")), &ds); err != nil {
		e.t.Fatal(err)
	}
	return ds
}

// Domain returns one domain or fails.
func (e *Env) Domain(name string) api.Domain {
	e.t.Helper()
	d, err := e.Client.Get(context.Background(), name)
	if err != nil {
		e.t.Fatalf("get %s: %v", name, err)
	}
	return d
}

// Await polls cond until it holds or the timeout passes.
func (e *Env) Await(what string, timeout time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %s waiting for %s\ndaemon log:\n%s", timeout, what, e.DaemonLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Console is a live console connection that accumulates output.
type Console struct {
	t    *testing.T
	conn net.Conn
	mu   sync.Mutex
	buf  bytes.Buffer
}

// Console attaches to a domain's console (with history).
func (e *Env) Console(name string) *Console {
	e.t.Helper()
	conn, err := e.Client.Console(context.Background(), name, true)
	if err != nil {
		e.t.Fatalf("console %s: %v", name, err)
	}
	return watchConsole(e.t, conn)
}

// watchConsole accumulates what a console stream (the raw upgrade, or a
// WebSocket as a net.Conn) brings; it is closed when the test ends.
func watchConsole(t *testing.T, conn net.Conn) *Console {
	c := &Console{t: t, conn: conn}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := conn.Read(b)
			c.mu.Lock()
			c.buf.Write(b[:n])
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return c
}

// Output is everything read so far.
func (c *Console) Output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// WaitFor waits until text has appeared after offset `from`.
func (c *Console) WaitFor(text string, from int, timeout time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := c.Output()
		if from <= len(out) {
			if i := strings.Index(out[from:], text); i >= 0 {
				return from + i + len(text)
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("console: %q did not appear within %s; output so far:\n%s", text, timeout, tail(out, 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Send types a line into the guest.
func (c *Console) Send(line string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(line + "\n")); err != nil {
		c.t.Fatalf("console write: %v", err)
	}
}

// Do types an idempotent command line until want appears after it: a
// shell still starting can eat the first characters of a line (busybox
// ash reads its cursor-position answer from the same input).
func (c *Console) Do(line, want string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		from := len(c.Output())
		c.Send(line)
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if strings.Contains(c.Output()[from:], want) {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("console: %q did not answer %q within %s; output so far:\n%s", line, want, timeout, tail(c.Output(), 3000))
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// QEMUs returns pids of QEMU processes using this env's state dir.
func (e *Env) QEMUs() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		var pid int
		if _, err := fmt.Sscanf(ent.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := string(b)
		if strings.Contains(cmd, "qemu-system") && strings.Contains(cmd, e.Dir+"/") {
			if st, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat")); err == nil && strings.Contains(string(st), ") Z ") {
				continue // exited, waiting to be reaped
			}
			pids = append(pids, pid)
		}
	}
	return pids
}

// Links lists interfaces in the env's namespace.
func (e *Env) Links() string {
	out, _ := exec.Command("ip", "-n", e.Netns, "-o", "link", "show").CombinedOutput()
	return string(out)
}

func (e *Env) cleanup() {
	t := e.t
	if e.daemon != nil {
		for _, d := range e.List() {
			e.RF("destroy", d.Spec.Name)
		}
	}
	e.StopDaemon()
	var leaked []int
	deadline := time.Now().Add(5 * time.Second)
	for {
		leaked = e.QEMUs()
		if len(leaked) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, pid := range leaked {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if len(leaked) > 0 {
		t.Errorf("QEMU processes left behind: %v", leaked)
	}
	if links := e.Links(); strings.Contains(links, "vif") || regexp.MustCompile(`ifb\d+\.\d+`).MatchString(links) {
		t.Errorf("taps or IFBs left behind:\n%s", links)
	}
	if rules, err := exec.Command("ip", "netns", "exec", e.Netns, "nft", "list", "ruleset").CombinedOutput(); err == nil && strings.Contains(string(rules), `iifname "vif`) {
		t.Errorf("a vif's filter left behind:\n%s", rules)
	}
	for _, n := range e.names {
		for _, dir := range cgroupDirs(e.State, n) {
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("cgroup left behind: %s", dir)
				os.Remove(dir)
			}
		}
	}
	exec.Command("ip", "netns", "del", e.Netns).Run()
	if t.Failed() {
		t.Logf("daemon log:\n%s", tail(e.DaemonLog(), 4000))
	}
	os.RemoveAll(e.Dir)
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// Boot creates a domain from extra config and waits for its ready line.
func (e *Env) Boot(name, extra string) *Console {
	e.t.Helper()
	e.MustRF("create", e.WriteConfig(name, extra))
	c := e.Console(name)
	c.WaitFor(image.ReadyLine, 0, 90*time.Second)
	return c
}

func itoa(n int) string { return fmt.Sprint(n) }

// guestStorage declares where guests' files may be on a host that takes
// migrations (a peer may name only declared storage): the tests' scratch
// dirs and the default image.
func guestStorage() string {
	return "--disk-roots=/tmp," + filepath.Dir(filepath.Dir(imgPaths.Kernel))
}

func runOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// cgroupDirs are the places a domain of the daemon on stateDir may have
// cgroups (its subtree is ringfence-<hash of the state dir>).
func cgroupDirs(stateDir, name string) []string {
	sum := sha256.Sum256([]byte(stateDir))
	sub := "ringfence-" + hex.EncodeToString(sum[:4])
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + sub + "/" + name)
	more, _ := filepath.Glob("/sys/fs/cgroup/memory/*/*/" + sub + "/" + name)
	return append(dirs, more...)
}

// cpuMax is a domain's CPU cap as cgroup v2 writes it ("QUOTA PERIOD",
// "max PERIOD" for none), read from cpu.max or cgroup v1's cfs files.
func cpuMax(stateDir, name string) string {
	if v := cgroupValue(stateDir, name, "cpu.max"); v != "" {
		return v
	}
	q, p := cgroupValue(stateDir, name, "cpu.cfs_quota_us"), cgroupValue(stateDir, name, "cpu.cfs_period_us")
	if q == "-1" {
		q = "max"
	}
	return q + " " + p
}

// cgroupValue is a domain's cgroup file (the first of its cgroup dirs
// that has it), trimmed; "" if none has it.
func cgroupValue(stateDir, name, file string) string {
	for _, dir := range cgroupDirs(stateDir, name) {
		if b, err := os.ReadFile(filepath.Join(dir, file)); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	return ""
}
