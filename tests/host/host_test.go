// Package host_test proves Ringfence on a real systemd host with pure
// cgroup v2 (issue 15 item 8): it boots a Debian 12 VM (image.BuildHostVM)
// under QEMU, installs the Ringfence .deb in it and, typing into the VM's
// serial shell, checks the service, the guests' cgroup v2 limits, a
// daemon restart with a guest running, and a host reboot with autostart.
// The guests are the default busybox guest under nested TCG: slow, real.
//
// It is skipped unless RINGFENCE_HOST_TEST=1 (make test-host) or
// RINGFENCE_HOST_TEST=short (CI): the short form checks everything
// Ringfence writes and keeps (service, cgroups, pids across a restart,
// autostart and reasons across a reboot, dpkg -r/-i) but does not wait for
// the nested guests to boot (their ready lines and live consoles), and
// gives the host's shutdown 15 s for guests that do not answer the power
// button. Settings:
//
//	RINGFENCE_DEB         the .deb to install (default: `make deb`, dist/ringfence_*_amd64.deb)
//	RINGFENCE_IMAGE_DIR   the default guest (default /var/lib/ringfence/images/default, make image)
//	RINGFENCE_HOSTVM_DIR  the host VM image cache (default /var/lib/ringfence/images/hostvm)
//	RINGFENCE_HOSTVM_KEEP keep the scratch dir (overlay, console log) after the test
package host_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/image"
)

// short is the CI form: the nested guests are not waited for.
var short bool

// Where things are inside the VM.
const (
	vmImages  = "/var/lib/ringfence/images/default" // as `make image` leaves it on a host
	vmDomains = "/etc/ringfence/domains"
	vmConf    = "/etc/ringfence/ringfence.conf"
	vmData    = "/mnt/hostvm-data" // the data disk (/dev/vdb), read-only
)

// How long things may take under (nested) TCG on a loaded 2-CPU host.
const (
	bootTimeout  = 6 * time.Minute  // the host VM to its shell
	guestTimeout = 10 * time.Minute // a nested guest to its ready line
	cmdTimeout   = 3 * time.Minute  // one ordinary command
)

func TestHostSystemdCgroupV2(t *testing.T) {
	switch os.Getenv("RINGFENCE_HOST_TEST") {
	case "1":
	case "short":
		short = true
	default:
		t.Skip("boots a Debian 12 VM under QEMU and tests the .deb in it (minutes): set RINGFENCE_HOST_TEST=1 (make test-host) or =short (make test-host-short)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("must run as root (builds the host VM image with debootstrap)")
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s missing: run `make deps`", tool)
		}
	}
	t0 := time.Now()
	var timings []string
	phase := func(name string, f func()) {
		t.Helper()
		start := time.Now()
		t.Logf("=== phase %s", name)
		f()
		d := time.Since(start).Round(100 * time.Millisecond)
		timings = append(timings, fmt.Sprintf("%-34s %8s", name, d))
		t.Logf("=== phase %s: %s", name, d)
	}
	defer func() {
		t.Logf("timings:\n%s\n%-34s %8s", strings.Join(timings, "\n"), "total", time.Since(t0).Round(100*time.Millisecond))
	}()

	// Inputs: the .deb, the default guest, the host VM image.
	var deb string
	phase("deb", func() { deb = findDeb(t) })
	imgDir := envOr("RINGFENCE_IMAGE_DIR", "/var/lib/ringfence/images/default")
	guest := image.PathsIn(imgDir)
	if !guest.Built() {
		t.Fatalf("the default guest is not built in %s: run `make image`", imgDir)
	}
	var vmImg image.HostVMPaths
	phase("host VM image (cached)", func() {
		var err error
		vmImg, err = image.BuildHostVM(envOr("RINGFENCE_HOSTVM_DIR", image.HostVMDefaultDir), testLog{t})
		if err != nil {
			t.Fatal(err)
		}
	})

	scratch, err := os.MkdirTemp("/tmp", "rf-hostvm-")
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("RINGFENCE_HOSTVM_KEEP") == "" {
		t.Cleanup(func() { os.RemoveAll(scratch) })
	} else {
		t.Logf("scratch dir kept: %s", scratch)
	}
	var data string
	phase("data disk", func() { data = buildDataDisk(t, scratch, deb, guest) })

	var vm *hostVM
	phase("boot host VM", func() {
		vm = bootVM(t, scratch, vmImg, data)
		vm.waitShell(bootTimeout)
	})

	phase("a: systemd + cgroup v2 host", func() {
		out := vm.must("ps -p 1 -o comm=; stat -fc %T /sys/fs/cgroup; awk '$3 == \"cgroup\"' /proc/mounts | wc -l", cmdTimeout)
		if f := strings.Fields(out); len(f) != 3 || f[0] != "systemd" || f[1] != "cgroup2fs" || f[2] != "0" {
			t.Fatalf("the VM is not a pure cgroup v2 systemd host (want: systemd, cgroup2fs, 0 v1 mounts):\n%s", out)
		}
		t.Logf("VM: PID 1 systemd, /sys/fs/cgroup cgroup2fs, no v1 hierarchy; %s", strings.TrimSpace(vm.must("systemctl --version | head -1; uname -r", cmdTimeout)))
		vm.mountData()
	})

	phase("a: dpkg -i + systemctl enable --now", func() {
		t.Logf("dpkg -i:\n%s", vm.must("dpkg -i "+vmData+"/"+filepath.Base(deb)+" </dev/null", cmdTimeout))
		// Three guests must run at once on this 2-vCPU VM (one vCPU
		// each): the host's settings allow two vCPUs per CPU.
		vm.must("echo 'vcpu_ratio = 2' >> "+vmConf, cmdTimeout)
		if short {
			// Guests still booting ignore the power button: the host's
			// shutdown destroys them after this.
			vm.must("sed -i 's/^SHUTDOWN_TIMEOUT=.*/SHUTDOWN_TIMEOUT=15/' /etc/default/ringfence-guests", cmdTimeout)
		}
		vm.must("systemctl enable --now ringfence && systemctl restart ringfence", cmdTimeout)
		if out := vm.must("systemctl is-active ringfence", cmdTimeout); strings.TrimSpace(out) != "active" {
			t.Fatalf("systemctl is-active ringfence: %s", out)
		}
		info := vm.info()
		t.Logf("ringfence info:\n%s", vm.must("ringfence info", cmdTimeout))
		if info.CgroupVersion != 2 {
			t.Fatalf("ringfence info: cgroup version %d, want 2 (base %q, scope %q)", info.CgroupVersion, info.CgroupBase, info.CgroupScope)
		}
		if info.Ledger.VCPURatio != 2 {
			t.Errorf("vcpu_ratio from %s not applied: ledger says %v", vmConf, info.Ledger.VCPURatio)
		}
		t.Logf("cgroups: version %d, base %s, scope %s; accel %s (%s)", info.CgroupVersion, info.CgroupBase, info.CgroupScope, info.Accel, info.AccelReason)
	})

	var pid int
	phase("b: create small + boot (nested TCG)", func() {
		vm.must("mkdir -p "+vmImages+" "+vmDomains+" && cp "+vmData+"/default/* "+vmImages+"/ && cp "+vmData+"/domains/*.cfg "+vmDomains+"/", cmdTimeout)
		var dry api.DryRun
		vm.mustJSON("ringfence create --dry-run --json "+vmDomains+"/small.cfg", &dry)
		vm.must("ringfence create "+vmDomains+"/small.cfg", cmdTimeout)
		vm.waitReady("small", guestTimeout)
		d := vm.domain("small")
		pid = d.PID
		if pid == 0 {
			t.Fatalf("small has no QEMU pid: %+v", d)
		}
		info := vm.info()
		var overhead int
		for _, e := range info.Ledger.Entries {
			if e.Domain == "small" {
				overhead = e.OverheadMiB
			}
		}
		if overhead != dry.OverheadMiB {
			t.Errorf("QEMU overhead: info's ledger says %d MiB, create --dry-run said %d MiB", overhead, dry.OverheadMiB)
		}
		// Where the QEMU really is, and where info says domains are.
		cg := strings.TrimSpace(vm.must(fmt.Sprintf("sed -n 's/^0:://p' /proc/%d/cgroup", pid), cmdTimeout))
		dir := filepath.Join("/sys/fs/cgroup", cg)
		want := filepath.Join(info.CgroupBase, "small")
		t.Logf("small: QEMU pid %d in %s (info: base %s, scope %s)", pid, dir, info.CgroupBase, info.CgroupScope)
		if dir != want {
			t.Errorf("small's QEMU is in %s, not in %s (info's cgroup base + name)", dir, want)
		}
		if !strings.Contains(dir, "/machine.slice/") {
			t.Errorf("small's QEMU is in %s, not under machine.slice (the ringfence-guests scope)", dir)
		}
		vals := vm.cgroupFiles(dir, "memory.max", "memory.swap.max", "cpu.weight", "cpu.max")
		wantMem := int64(dry.Spec.MaxMemMiB+dry.OverheadMiB) << 20
		t.Logf("small: %v; dry-run: %d MiB RAM + %d MiB overhead = %d bytes; host.CPUWeightV2(512) = %d",
			vals, dry.Spec.MaxMemMiB, dry.OverheadMiB, wantMem, host.CPUWeightV2(512))
		if vals["memory.max"] != strconv.FormatInt(wantMem, 10) {
			t.Errorf("memory.max = %s, want %d (guest RAM %d MiB + QEMU overhead %d MiB)", vals["memory.max"], wantMem, dry.Spec.MaxMemMiB, dry.OverheadMiB)
		}
		if vals["memory.swap.max"] != "0" {
			t.Errorf("memory.swap.max = %s, want 0", vals["memory.swap.max"])
		}
		if vals["cpu.weight"] != strconv.Itoa(host.CPUWeightV2(512)) {
			t.Errorf("cpu.weight = %s, want %d (host.CPUWeightV2(512))", vals["cpu.weight"], host.CPUWeightV2(512))
		}
		if vals["cpu.max"] != "80000 100000" {
			t.Errorf("cpu.max = %q, want \"80000 100000\" (cap=80)", vals["cpu.max"])
		}
		t.Logf("systemd's view:\n%s", vm.must("systemctl status --no-pager -l ringfence.service machine.slice 2>&1 | grep -v '^ *[│├└]*─*[0-9]* .*qemu-system' | head -60; true", cmdTimeout))
	})

	phase("c: systemctl restart ringfence", func() {
		vm.must("systemctl restart ringfence", cmdTimeout)
		if out := vm.must("systemctl is-active ringfence", cmdTimeout); strings.TrimSpace(out) != "active" {
			t.Fatalf("systemctl is-active ringfence after restart: %s", out)
		}
		d := vm.domain("small")
		if d.PID != pid {
			t.Fatalf("small's QEMU pid changed across the daemon restart: %d -> %d (%s, %s)", pid, d.PID, d.State, d.LastReason)
		}
		if d.State != api.StateRunning && d.State != api.StateBlocked {
			t.Fatalf("small after the daemon restart: state %s (%s)", d.State, d.LastReason)
		}
		if out := vm.must("ringfence list small", cmdTimeout); !strings.Contains(out, "small") {
			t.Fatalf("ringfence list small:\n%s", out)
		}
		vm.consoleLive("small")
	})

	phase("d: define auto1 (autostart) + third, start", func() {
		vm.must("ringfence define "+vmDomains+"/auto1.cfg && ringfence autostart auto1 on && ringfence define "+vmDomains+"/third.cfg", cmdTimeout)
		vm.must("ringfence start auto1 && ringfence start third", cmdTimeout)
		// Both up before the reboot: the host's shutdown then stops
		// guests that answer the power button.
		vm.waitReady("auto1", guestTimeout)
		vm.waitReady("third", guestTimeout)
		t.Logf("before the reboot:\n%s", vm.must("ringfence list --all", cmdTimeout))
	})

	var before map[string]api.Domain
	phase("d: systemctl reboot + boot", func() {
		before = vm.domains()
		oldBoot := strings.TrimSpace(vm.must("cat /proc/sys/kernel/random/boot_id", cmdTimeout))
		vm.send("systemctl reboot")
		vm.waitNewBoot(oldBoot, bootTimeout)
		vm.must("for i in $(seq 120); do systemctl is-active -q ringfence && ringfence info >/dev/null 2>&1 && break; sleep 1; done; systemctl is-active ringfence", cmdTimeout)
	})

	phase("d: after the reboot", func() {
		vm.waitReady("auto1", guestTimeout)
		// The ready line may be the last boot's, from the kept console
		// history: a command answered now proves this boot's guest.
		vm.consoleLive("auto1")
		after := vm.domains()
		t.Logf("after the reboot:\n%s", vm.must("ringfence list --all", cmdTimeout))
		for name := range before {
			if _, ok := after[name]; !ok {
				t.Errorf("%s was lost across the host reboot (before: %+v)", name, before[name])
			}
		}
		if d := after["auto1"]; d.PID == 0 || (d.State != api.StateRunning && d.State != api.StateBlocked) {
			t.Errorf("auto1 (autostart) after the reboot: state %s, pid %d, reason %q", d.State, d.PID, d.LastReason)
		}
		for _, name := range []string{"third", "small"} {
			d, ok := after[name]
			if !ok {
				continue
			}
			// ringfence-guests.service stopped it as the host went down.
			if d.PID != 0 || d.State != api.StateShutdown || !strings.HasPrefix(d.LastReason, "host shut down") {
				t.Errorf("%s after the reboot: state %s, pid %d, reason %q; want shutdown, reason \"host shut down\"", name, d.State, d.PID, d.LastReason)
			}
		}
	})

	phase("e: dpkg -r + dpkg -i with a guest running", func() {
		d := vm.domain("auto1")
		// Removing the package stops the daemon only; the guest runs on.
		vm.must("dpkg -r ringfence </dev/null", cmdTimeout)
		if out, code := vm.run("systemctl is-active ringfence", cmdTimeout); strings.TrimSpace(out) == "active" {
			t.Fatalf("ringfence still active after dpkg -r (exit %d)", code)
		}
		vm.must(fmt.Sprintf("kill -0 %d", d.PID), cmdTimeout)
		// Installing it again re-attaches to that same QEMU.
		vm.mountData() // gone with the reboot
		vm.must("dpkg -i "+vmData+"/"+filepath.Base(deb)+" </dev/null", cmdTimeout)
		vm.must("for i in $(seq 120); do ringfence info >/dev/null 2>&1 && break; sleep 1; done", cmdTimeout)
		if again := vm.domain("auto1"); again.PID != d.PID || (again.State != api.StateRunning && again.State != api.StateBlocked) {
			t.Fatalf("auto1 after dpkg -r and -i: pid %d -> %d, state %s (%s)", d.PID, again.PID, again.State, again.LastReason)
		}
		vm.consoleLive("auto1")
	})
}

// findDeb is $RINGFENCE_DEB, or what `make deb` makes.
func findDeb(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RINGFENCE_DEB"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("RINGFENCE_DEB: %v", err)
		}
		return p
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "-C", root, "deb")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(root, "dist", "ringfence_*_amd64.deb"))
	if len(debs) == 0 {
		t.Fatal("make deb made no dist/ringfence_*_amd64.deb")
	}
	sort.Slice(debs, func(i, j int) bool { return mtime(debs[i]).After(mtime(debs[j])) })
	t.Logf("installing %s", debs[0])
	return debs[0]
}

func mtime(p string) time.Time {
	fi, err := os.Stat(p)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// buildDataDisk makes the second disk: the .deb, the default guest's
// files and the domain files, on a small ext4 filesystem.
func buildDataDisk(t *testing.T, scratch, deb string, guest image.Paths) string {
	t.Helper()
	src := filepath.Join(scratch, "data")
	for _, d := range []string{"default", "domains"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyTo := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyTo(deb, filepath.Join(src, filepath.Base(deb)))
	for _, f := range []string{guest.Kernel, guest.Initrd} {
		copyTo(f, filepath.Join(src, "default", filepath.Base(f)))
	}
	kernel, initrd := vmImages+"/"+filepath.Base(guest.Kernel), vmImages+"/"+filepath.Base(guest.Initrd)
	domain := func(name, extra string) string {
		return fmt.Sprintf(`# %s: the default guest (busybox initramfs), no disk, no network.
name = "%s"
kernel = "%s"
ramdisk = "%s"
memory = 96
vcpus = 1
extra = "console=hvc0"
%s`, name, name, kernel, initrd, extra)
	}
	files := map[string]string{
		"small.cfg": domain("small", "cpu_weight = 512\ncap = 80\n"),
		"auto1.cfg": domain("auto1", ""),
		"third.cfg": domain("third", ""),
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(src, "domains", n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var used int64
	filepath.Walk(src, func(_ string, fi os.FileInfo, err error) error {
		if err == nil {
			used += fi.Size()
		}
		return nil
	})
	img := filepath.Join(scratch, "data.img")
	size := (used + 64<<20) >> 20
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "hostvm-data", "-E", "root_owner=0:0", "-d", src, img, fmt.Sprintf("%dM", size)).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 (data disk): %v\n%s", err, out)
	}
	return img
}
