// Package benchenv is what every benchmark needs: the ringfence binary
// built from this tree, a daemon on a state dir of its own, and waiting for
// a line on a console or serial stream.
package benchenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ringfence/ringfence/internal/client"
)

// Build compiles cmd/ringfence into dir and returns the binary's path.
func Build(dir string) (string, error) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	bin := filepath.Join(dir, "ringfence")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/ringfence")
	cmd.Dir = strings.TrimSpace(string(root))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building ringfence: %v\n%s", err, out)
	}
	for _, helper := range []string{"ringfence-launch", "ringfence-guard"} {
		cmd = exec.Command("go", "build", "-o", filepath.Join(dir, helper), "./cmd/"+helper)
		cmd.Dir = strings.TrimSpace(string(root))
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("building %s: %v\n%s", helper, err, out)
		}
	}
	return bin, nil
}

// Workdir makes a scratch directory (under parent) and builds the
// ringfence binary into it; cleanup removes it.
func Workdir(parent, prefix string) (dir, bin string, cleanup func(), err error) {
	dir, err = os.MkdirTemp(parent, prefix)
	if err != nil {
		return "", "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	if bin, err = Build(dir); err != nil {
		cleanup()
		return "", "", nil, err
	}
	return dir, bin, cleanup, nil
}

// Daemon starts `ringfence serve` on stateDir (log in stateDir/daemon.log)
// and waits until it answers; stop ends it (guests are the caller's).
func Daemon(bin, stateDir string, args ...string) (c *client.Client, stop func(), err error) {
	return DaemonIn("", bin, stateDir, args...)
}

// DaemonIn is Daemon inside network namespace netns ("" = this one), so a
// benchmark's taps, bridges and rules stay in a namespace it owns. Only
// the network namespace is joined (nsenter --net): `ip netns exec` would
// also remount /sys and hide the cgroup hierarchies.
func DaemonIn(netns, bin, stateDir string, args ...string) (c *client.Client, stop func(), err error) {
	c, _, stop, err = DaemonProc(netns, bin, stateDir, args...)
	return c, stop, err
}

// DaemonProc is DaemonIn that also gives the daemon's process id (a
// benchmark that reads the daemon's own CPU time needs it).
func DaemonProc(netns, bin, stateDir string, args ...string) (c *client.Client, pid int, stop func(), err error) {
	os.MkdirAll(stateDir, 0o700)
	sock := filepath.Join(stateDir, "s.sock")
	argv := append([]string{bin, "--socket", sock, "serve", "--state-dir", stateDir}, args...)
	if netns != "" {
		argv = append([]string{"nsenter", "--net=/run/netns/" + netns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(filepath.Join(stateDir, "daemon.log"))
	if err != nil {
		return nil, 0, nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, 0, nil, err
	}
	stop = func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait(); logf.Close() }
	c = client.New(sock)
	for i := 0; i < 300; i++ {
		if _, err := c.Host(context.Background()); err == nil {
			return c, cmd.Process.Pid, stop, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	return nil, 0, nil, fmt.Errorf("daemon on %s did not start; see %s/daemon.log", stateDir, stateDir)
}

// WaitFor reads r until text appears (it may span reads).
func WaitFor(r io.Reader, text string, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() {
		br := bufio.NewReader(r)
		var seen []byte
		buf := make([]byte, 4096)
		for {
			n, err := br.Read(buf)
			seen = append(seen, buf[:n]...)
			if bytes.Contains(seen, []byte(text)) {
				done <- nil
				return
			}
			if len(seen) > 1<<16 {
				seen = seen[len(seen)-len(text):]
			}
			if err != nil {
				done <- fmt.Errorf("stream ended before %q: %v", text, err)
				return
			}
		}
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("%q not seen within %s", text, timeout)
	}
}

// Undo is what a benchmark set up and must take down, in reverse, as
// deferred calls in one function would be; it lets the set-up be split
// into steps.
type Undo []func()

// Later pushes f to be run by Run.
func (u *Undo) Later(f func()) { *u = append(*u, f) }

// Run runs what Later pushed, last first (each deferred, so one that
// panics does not skip the rest).
func (u *Undo) Run() {
	for _, f := range *u {
		defer f()
	}
}

// Sh runs a command, its output part of the error.
func Sh(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Count reads r to its end: how many bytes came, and the seconds from the
// first to the end (a sink's view of a transfer, buffers drained).
func Count(r io.Reader) (n int64, seconds float64) {
	buf := make([]byte, 256<<10)
	var first time.Time
	for {
		k, err := r.Read(buf)
		if k > 0 && n == 0 {
			first = time.Now()
		}
		n += int64(k)
		if err != nil {
			break
		}
	}
	if n == 0 {
		return 0, 0
	}
	return n, time.Since(first).Seconds()
}

// Report ends a benchmark's run: err ends it with a message, else res is
// printed as JSON and written to bench/results/NAME.json.
func Report(name string, res any, err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	fmt.Println(string(b))
	os.MkdirAll("bench/results", 0o755)
	os.WriteFile(filepath.Join("bench/results", name+".json"), b, 0o644)
}
