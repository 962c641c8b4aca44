// Package benchenv is what every benchmark needs: the ringfence binary
// built from this tree, a daemon on a state dir of its own, and waiting for
// a line on a console or serial stream.
package benchenv

import (
	"bufio"
	"bytes"
	"context"
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
	cmd = exec.Command("go", "build", "-o", filepath.Join(dir, "ringfence-launch"), "./cmd/ringfence-launch")
	cmd.Dir = strings.TrimSpace(string(root))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building ringfence-launch: %v\n%s", err, out)
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
		return nil, nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stop = func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait(); logf.Close() }
	c = client.New(sock)
	for i := 0; i < 300; i++ {
		if _, err := c.Host(context.Background()); err == nil {
			return c, stop, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	return nil, nil, fmt.Errorf("daemon on %s did not start; see %s/daemon.log", stateDir, stateDir)
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
