package host_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/image"
)

// hostVM is the running VM and its shell port.
type hostVM struct {
	t       *testing.T
	dir     string
	console string // ttyS0, the kernel's and systemd's console, to a file
	cmd     *exec.Cmd
	exited  chan struct{}
	conn    net.Conn
	mu      sync.Mutex
	out     bytes.Buffer // the shell port's output, CRs removed
	seq     int
}

// bootVM starts QEMU: TCG, 2 vCPUs, 3 GiB; the image's root under a
// throwaway qcow2 overlay (the cache stays clean), the data disk
// read-only; ttyS0 to console.log, ttyS1 (the root shell) on a unix socket.
func bootVM(t *testing.T, dir string, img image.HostVMPaths, data string) *hostVM {
	t.Helper()
	overlay := filepath.Join(dir, "root.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", img.Root, overlay).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create (overlay): %v\n%s", err, out)
	}
	v := &hostVM{t: t, dir: dir, console: filepath.Join(dir, "console.log"), exited: make(chan struct{})}
	sock := filepath.Join(dir, "shell.sock")
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
		"-machine", "q35", "-accel", "tcg,thread=multi",
		// QEMU's baseline CPU without SVM (qemu64 has it, and the VM's
		// kvm_amd would then offer a /dev/kvm): the nested guests run
		// under TCG. Not -cpu max: under QEMU 7.2's TCG the VM's 6.1
		// kernel then corrupts copies to and from user space (static
		// binaries abort in _dl_get_origin, mounts fail, writing
		// /etc/machine-id gives EINVAL) and never reaches a shell.
		"-cpu", "qemu64,-svm", "-smp", "2", "-m", "3072",
		"-kernel", img.Kernel, "-initrd", img.Initrd, "-append", image.HostVMCmdline,
		"-drive", "file=" + overlay + ",if=virtio,format=qcow2,cache=unsafe,discard=unmap",
		"-drive", "file=" + data + ",if=virtio,format=raw,readonly=on",
		"-nic", "none",
		"-serial", "file:" + v.console,
		"-chardev", "socket,id=shell,path=" + sock + ",server=on,wait=off",
		"-serial", "chardev:shell",
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	qlog, err := os.Create(filepath.Join(dir, "qemu.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = qlog, qlog
	// Own process group; killed with the test process if it dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	qlog.Close()
	v.cmd = cmd
	go func() { cmd.Wait(); close(v.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-v.exited
		if v.conn != nil {
			v.conn.Close()
		}
	})
	// Registered after the kill, so it runs first: evidence while the
	// VM still answers.
	t.Cleanup(v.diagnose)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			v.conn = c
			break
		}
		select {
		case <-v.exited:
			b, _ := os.ReadFile(filepath.Join(dir, "qemu.log"))
			t.Fatalf("QEMU exited at start: %s", b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("QEMU's shell socket did not appear: %v", err)
		}
	}
	go func() {
		b := make([]byte, 8192)
		for {
			n, err := v.conn.Read(b)
			v.mu.Lock()
			v.out.Write(bytes.ReplaceAll(b[:n], []byte("\r"), nil))
			v.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return v
}

func (v *hostVM) output() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.out.String()
}

// send types one line into the shell.
func (v *hostVM) send(line string) {
	v.t.Helper()
	if _, err := v.conn.Write([]byte(line + "\n")); err != nil {
		v.t.Fatalf("writing to the VM's shell: %v", err)
	}
}

// await waits for re to match the shell's output after from.
func (v *hostVM) await(re *regexp.Regexp, from int, timeout time.Duration) ([]int, bool) {
	deadline := time.Now().Add(timeout)
	for {
		out := v.output()
		if m := re.FindStringSubmatchIndex(out[from:]); m != nil {
			for i := range m {
				if m[i] >= 0 {
					m[i] += from
				}
			}
			return m, true
		}
		select {
		case <-v.exited:
			return nil, false
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, false
		}
	}
}

// Markers are printed by printf from pieces, so the typed (echoed) line
// never contains them.
func marker(kind string, n int) string { return fmt.Sprintf("__RF_%s%d", kind, n) }

// waitShell waits for the root shell on ttyS1 and sets it up for a
// program: no line editing, no echo, no pager, wide lines.
func (v *hostVM) waitShell(timeout time.Duration) {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v.seq++
		from := len(v.output())
		v.send(fmt.Sprintf("printf '%%s_R%%d\\n' __RF %d", v.seq))
		if _, ok := v.await(regexp.MustCompile(regexp.QuoteMeta(marker("R", v.seq))+`\n`), from, 5*time.Second); ok {
			// A shell that is going away (a reboot) may answer this and
			// then die: only a finished set-up counts.
			if _, code := v.run("set +o emacs +o vi; stty -echo cols 300 rows 50; export SYSTEMD_PAGER= SYSTEMD_COLORS=0 PAGER=cat TERM=dumb; PS1=; PS2=", 30*time.Second); code == 0 {
				return
			}
		}
		select {
		case <-v.exited:
			v.t.Fatalf("the VM's QEMU exited; console:\n%s", v.consoleTail(4000))
		default:
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("no shell on %s within %s; console:\n%s\nshell port:\n%s", image.HostVMShellTTY, timeout, v.consoleTail(4000), tail(v.output(), 2000))
		}
	}
}

// waitNewBoot waits for the shell of a boot other than oldBoot.
func (v *hostVM) waitNewBoot(oldBoot string, timeout time.Duration) {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v.waitShell(time.Until(deadline))
		out, code := v.run("cat /proc/sys/kernel/random/boot_id", 30*time.Second)
		if code == 0 && strings.TrimSpace(out) != oldBoot && strings.TrimSpace(out) != "" {
			return
		}
		time.Sleep(2 * time.Second)
	}
}

// run runs one shell command line and returns its output (stdout and
// stderr) and exit status; -1 if it did not finish in time.
func (v *hostVM) run(cmd string, timeout time.Duration) (string, int) {
	v.t.Helper()
	v.seq++
	n := v.seq
	from := len(v.output())
	v.send(fmt.Sprintf("printf '%%s_B%%d\\n' __RF %d; { %s\n} 2>&1; printf '%%s_E%%d_%%d\\n' __RF %d $?", n, cmd, n))
	re := regexp.MustCompile(regexp.QuoteMeta(marker("B", n)) + `\n((?s:.*?))` + regexp.QuoteMeta(marker("E", n)) + `_(\d+)\n`)
	m, ok := v.await(re, from, timeout)
	if !ok {
		return tail(v.output()[from:], 4000), -1
	}
	out := v.output()
	code, _ := strconv.Atoi(out[m[4]:m[5]])
	return out[m[2]:m[3]], code
}

// must runs cmd and fails the test unless it exits 0.
func (v *hostVM) must(cmd string, timeout time.Duration) string {
	v.t.Helper()
	out, code := v.run(cmd, timeout)
	if code == -1 {
		v.t.Fatalf("in the VM: %s\ndid not finish within %s; shell output:\n%s\nconsole:\n%s", cmd, timeout, out, v.consoleTail(3000))
	}
	if code != 0 {
		v.t.Fatalf("in the VM: %s\nexit %d:\n%s", cmd, code, out)
	}
	return out
}

func (v *hostVM) mustJSON(cmd string, into any) {
	v.t.Helper()
	out := v.must(cmd+" 2>/dev/null", cmdTimeout)
	if err := json.Unmarshal([]byte(out), into); err != nil {
		v.t.Fatalf("in the VM: %s: not JSON (%v):\n%s", cmd, err, out)
	}
}

func (v *hostVM) info() api.HostInfo {
	v.t.Helper()
	var info api.HostInfo
	v.mustJSON("ringfence info --json", &info)
	return info
}

// domains is `ringfence list --all --json` by name.
func (v *hostVM) domains() map[string]api.Domain {
	v.t.Helper()
	var ds []api.Domain
	v.mustJSON("ringfence list --all --json", &ds)
	m := map[string]api.Domain{}
	for _, d := range ds {
		m[d.Spec.Name] = d
	}
	return m
}

func (v *hostVM) domain(name string) api.Domain {
	v.t.Helper()
	d, ok := v.domains()[name]
	if !ok {
		v.t.Fatalf("ringfence list --all has no %s:\n%s", name, v.must("ringfence list --all", cmdTimeout))
	}
	return d
}

// waitReady waits for a guest's ready line on its console (history
// included).
func (v *hostVM) waitReady(name string, timeout time.Duration) {
	v.t.Helper()
	start := time.Now()
	if short {
		// No console wait in the short form, but the domain must run
		// (autostart starts it after the daemon is up, not before).
		for v.domain(name).PID == 0 {
			if time.Since(start) > timeout {
				v.t.Fatalf("%s not running after %s", name, timeout)
			}
			time.Sleep(2 * time.Second)
		}
		return
	}
	secs := int(timeout / time.Second)
	v.must(fmt.Sprintf("ringfence console %s --until '%s' --timeout %d >/dev/null", name, image.ReadyLine, secs), timeout+time.Minute)
	v.t.Logf("%s: %q on its console after %s", name, image.ReadyLine, time.Since(start).Round(100*time.Millisecond))
}

// consoleLive proves a domain's console works both ways: a line typed
// through one `ringfence console` is answered by the guest's shell, seen
// live (no history) by `ringfence console --until`. The line is typed
// again every few seconds until the answer comes (a guest still booting
// may drop it).
func (v *hostVM) consoleLive(name string) {
	v.t.Helper()
	if short {
		v.t.Logf("%s: live console not checked (short form)", name)
		return
	}
	start := time.Now()
	v.must(fmt.Sprintf("ringfence console %[1]s --no-history --until rf-live-42 --timeout 400 >/tmp/until.out 2>&1 & w=$!; sleep 2; "+
		"while kill -0 $w 2>/dev/null; do printf 'echo rf-live-$((6*7))\\n' | timeout 5 ringfence console %[1]s --no-history >/dev/null; sleep 5; done; "+
		"wait $w; rc=$?; cat /tmp/until.out; test $rc = 0", name), 8*time.Minute)
	v.t.Logf("%s: live console, a typed command answered after %s", name, time.Since(start).Round(100*time.Millisecond))
}

// mountData mounts the data disk (the .deb, the guest's files), once per
// boot.
func (v *hostVM) mountData() {
	v.t.Helper()
	v.must("mkdir -p "+vmData+" && { mountpoint -q "+vmData+" || mount -o ro /dev/vdb "+vmData+"; }", cmdTimeout)
}

// cgroupFiles reads files of a cgroup directory.
func (v *hostVM) cgroupFiles(dir string, files ...string) map[string]string {
	v.t.Helper()
	vals := map[string]string{}
	for _, f := range files {
		vals[f] = strings.TrimSpace(v.must("cat "+filepath.Join(dir, f), cmdTimeout))
	}
	return vals
}

func (v *hostVM) consoleTail(n int) string {
	b, _ := os.ReadFile(v.console)
	return tail(string(b), n)
}

// diagnose logs what the VM says about Ringfence when the test failed.
func (v *hostVM) diagnose() {
	if !v.t.Failed() {
		return
	}
	select {
	case <-v.exited:
		v.t.Logf("the VM's QEMU had exited; console:\n%s", v.consoleTail(6000))
		return
	default:
	}
	for _, c := range []string{
		"systemctl status --no-pager -l ringfence ringfence-guests ringfence-guests.scope 2>&1 | head -80",
		"journalctl -b --no-pager -u ringfence -u ringfence-guests -n 120",
		"ringfence list --all 2>&1",
		"systemd-cgls --no-pager /machine.slice 2>&1 | head -40",
	} {
		out, code := v.run(c, time.Minute)
		v.t.Logf("diagnosis: %s (exit %d)\n%s", c, code, out)
		if code == -1 {
			break
		}
	}
	v.t.Logf("console (ttyS0):\n%s", v.consoleTail(3000))
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Logf("%s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
