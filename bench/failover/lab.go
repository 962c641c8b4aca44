package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
	"github.com/ringfence/ringfence/tests/chaos"
)

// host is one daemon of the benchmark's cluster, in its namespace.
type host struct {
	name, ns, dir string
	idx           int
	bin           string
	args          []string
	c             *client.Client
	pid           int
	stop          func()
}

func (h *host) Name() string     { return h.name }
func (h *host) Index() int       { return h.idx }
func (h *host) StateDir() string { return filepath.Join(h.dir, "state") }
func (h *host) Procs() []int     { return chaos.HostProcs(h.pid, h.dir) }

// Restart starts the daemon again (after a kill: its member and lease
// resume from its state dir).
func (h *host) Restart() error {
	var err error
	h.c, h.pid, h.stop, err = benchenv.DaemonProc(h.ns, h.bin, h.StateDir(), h.args...)
	return err
}

// cli runs the CLI against this host's daemon.
func (h *host) cli(args ...string) (string, error) {
	out, err := exec.Command(h.bin, append([]string{"--socket", filepath.Join(h.StateDir(), "s.sock")}, args...)...).Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), fmt.Errorf("%s: ringfence %s: %s", h.name, strings.Join(args, " "), strings.TrimSpace(string(ee.Stderr)))
	}
	return string(out), err
}

// qemu is the pid of the guest's QEMU on this host (0: none).
func (h *host) qemu() int {
	for _, pid := range h.Procs() {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(b), "qemu-system") {
			if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(st), ") Z ") {
				return pid
			}
		}
	}
	return 0
}

// lab is three daemons in three namespaces, one cluster, one HA guest.
type lab struct {
	net   *chaos.Net
	hosts []*host
	cl    *chaos.Cluster
	undo  benchenv.Undo
}

// newLab builds the binary, the namespaces and the daemons and forms the
// cluster; the caller runs l.undo.Run.
func newLab(imgDir string) (*lab, error) {
	l := &lab{}
	dir, bin, cleanup, err := benchenv.Workdir("/tmp", "rfbf")
	if err != nil {
		return nil, err
	}
	l.undo.Later(cleanup)
	if l.net, err = chaos.NewNet(chaos.Prefix("rfb", 1), 3); err != nil {
		return l, err
	}
	l.undo.Later(l.net.Remove)
	l.cl = &chaos.Cluster{Net: l.net}
	var clis []chaos.CLI
	for i, ns := range l.net.Hosts {
		h := &host{name: chaos.Names[i], ns: ns, idx: i + 1, bin: bin, dir: filepath.Join(dir, fmt.Sprintf("h%d", i+1))}
		h.args = []string{"--run-dir", filepath.Join(h.dir, "run"), "--listen", l.net.Addr(i+1) + ":7443",
			"--disk-roots=/tmp," + filepath.Dir(imgDir), "--vcpu-ratio", "4"}
		if err := h.Restart(); err != nil {
			return l, err
		}
		l.undo.Later(func() { h.shutdown() })
		l.hosts = append(l.hosts, h)
		l.cl.Hosts = append(l.cl.Hosts, h)
		clis = append(clis, h.cli)
	}
	return l, chaos.Form(l.net, clis, false, 2*time.Minute)
}

// shutdown destroys the host's guests and stops its daemon; anything of
// it left (a QEMU of a killed daemon) is killed.
func (h *host) shutdown() {
	if out, err := h.cli("list", "--json"); err == nil && strings.Contains(out, guest) {
		h.cli("destroy", guest)
	}
	if h.stop != nil {
		h.stop()
	}
	for _, pid := range h.Procs()[1:] {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// follow sends the host's HA events from now on to got, until ctx ends.
func (h *host) follow(ctx context.Context, got chan<- api.Event) {
	c := h.c
	go c.Events(ctx, -1, func(ev api.Event) error {
		if ev.Type == api.EventHA {
			select {
			case got <- ev:
			case <-ctx.Done():
			}
		}
		return nil
	})
}
