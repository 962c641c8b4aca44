// Command provision measures the time from `ringfence create --image
// debian-12 ... --ssh-key` to a successful `ssh root@ADDR true` from the
// network namespace the guest's NAT network lives in, side by side with
// bare QEMU booting the same image (a thin clone, the same kind of seed,
// a tap on the same bridge): the limit. It reports both and their ratio.
// Under TCG each is tens of seconds to minutes.
//
// The image is built (or found built) in /var/cache/ringfence-test/images,
// the e2e tests' cache. Run as root: go run ./bench/provision
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
	"github.com/ringfence/ringfence/internal/cloudinit"
)

const (
	subnet   = "10.81.0.0/24"
	rfAddr   = "10.81.0.10"
	bareAddr = "10.81.0.20"
	bareMAC  = "00:16:3e:81:00:20"
)

func main() {
	cache := flag.String("cache", "/var/cache/ringfence-test/images", "the image pool's directory (built there if missing)")
	timeout := flag.Duration("timeout", 15*time.Minute, "per boot")
	flag.Parse()
	if err := run(*cache, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// bench is one run's set-up.
type bench struct {
	dir, bin, sock, netns, key string
	timeout                    time.Duration
	undo                       benchenv.Undo
}

func run(cache string, timeout time.Duration) error {
	dir, bin, cleanup, err := benchenv.Workdir("/var/tmp", "rfprov")
	if err != nil {
		return err
	}
	defer cleanup()
	b := &bench{dir: dir, bin: bin, netns: fmt.Sprintf("rfprov%d", os.Getpid()), timeout: timeout}
	defer b.undo.Run()
	if err := benchenv.Sh("ip", "netns", "add", b.netns); err != nil {
		return err
	}
	b.undo.Later(func() { benchenv.Sh("ip", "netns", "del", b.netns) })
	c, stop, err := benchenv.DaemonIn(b.netns, bin, filepath.Join(dir, "state"))
	if err != nil {
		return err
	}
	b.undo.Later(stop)
	b.sock = filepath.Join(dir, "state", "s.sock")
	ctx := context.Background()
	h, _ := c.Host(ctx)
	for _, args := range [][]string{
		{"pool", "create", "cache", "--dir", cache},
		{"image", "build", "debian-12", "--pool", "cache"},
		{"network", "create", "nat0", "--nat", "--subnet", subnet},
	} {
		if err := b.rf(args...); err != nil {
			return err
		}
	}
	b.key = filepath.Join(dir, "key")
	if err := benchenv.Sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", b.key); err != nil {
		return err
	}
	b.undo.Later(func() {
		b.rf("destroy", "b1")
		os.Remove(filepath.Join(cache, "b1-disk.qcow2"))
		os.Remove(filepath.Join(cache, "b1-seed.iso"))
	})
	t0 := time.Now()
	if err := b.rf("create", "--image", "debian-12", "b1", "--image-pool", "cache", "--ssh-key", b.key+".pub",
		"--network", "nat0", "--ip", rfAddr); err != nil {
		return err
	}
	rf, err := b.sshUp(rfAddr, t0)
	if err != nil {
		return err
	}
	b.rf("destroy", "b1")
	bare, err := b.bare(cache, h.Accel)
	if err != nil {
		return err
	}
	fmt.Printf("%-34s %10s\n", "create --image -> ssh true ("+h.Accel+")", "seconds")
	fmt.Printf("%-34s %10.1f\n", "ringfence", rf.Seconds())
	fmt.Printf("%-34s %10.1f\n", "bare QEMU (same image, seed, tap)", bare.Seconds())
	fmt.Printf("%-34s %10.2f\n", "ratio", rf.Seconds()/bare.Seconds())
	return nil
}

func (b *bench) rf(args ...string) error {
	return benchenv.Sh(append([]string{b.bin, "--socket", b.sock}, args...)...)
}

// sshUp polls `ssh root@addr true` from the namespace; the time since t0.
func (b *bench) sshUp(addr string, t0 time.Time) (time.Duration, error) {
	for time.Since(t0) < b.timeout {
		cmd := exec.Command("ip", "netns", "exec", b.netns, "ssh", "-i", b.key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=2", "-o", "LogLevel=ERROR", "root@"+addr, "true")
		if cmd.Run() == nil {
			return time.Since(t0), nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return 0, fmt.Errorf("no ssh to %s within %s", addr, b.timeout)
}

// bare boots the same image with QEMU alone: the time from starting the
// clone to ssh, the clone and the seed made inside the timing as the
// daemon makes them inside its create.
func (b *bench) bare(cache, accel string) (time.Duration, error) {
	pub, err := os.ReadFile(b.key + ".pub")
	if err != nil {
		return 0, err
	}
	disk, seed := filepath.Join(b.dir, "bare.qcow2"), filepath.Join(b.dir, "bare-seed.iso")
	t0 := time.Now()
	if err := benchenv.Sh("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", filepath.Join(cache, "debian-12.qcow2"), disk); err != nil {
		return 0, err
	}
	files, err := cloudinit.Render(cloudinit.Settings{Hostname: "bare", SSHKeys: []string{strings.TrimSpace(string(pub))},
		NICs: []cloudinit.NIC{{MAC: bareMAC, Address: bareAddr + "/24", Gateway: "10.81.0.1", DNS: []string{"10.81.0.1"}}}})
	if err != nil {
		return 0, err
	}
	if err := cloudinit.Write(context.Background(), seed, files); err != nil {
		return 0, err
	}
	kernel, initrd := filepath.Join(cache, ".images", "debian-12.vmlinuz"), filepath.Join(cache, ".images", "debian-12.initrd")
	argv := []string{"ip", "netns", "exec", b.netns, "qemu-system-x86_64", "-machine", "q35", "-accel", accel, "-m", "512", "-smp", "1",
		"-nodefaults", "-display", "none", "-serial", "null", "-kernel", kernel, "-initrd", initrd,
		"-append", "root=/dev/vda1 ro console=ttyS0,115200",
		"-drive", "file=" + disk + ",if=virtio,format=qcow2", "-drive", "file=" + seed + ",if=virtio,format=raw,readonly=on",
		"-netdev", "tap,id=n0,ifname=rfbare0,script=no,downscript=no", "-device", "virtio-net-pci,netdev=n0,mac=" + bareMAC}
	if accel == "kvm" {
		argv = append(argv, "-cpu", "host")
	}
	q := exec.Command(argv[0], argv[1:]...)
	if err := q.Start(); err != nil {
		return 0, err
	}
	defer func() { q.Process.Kill(); q.Wait() }()
	for i := 0; i < 100; i++ { // the tap appears once QEMU runs
		if benchenv.Sh("ip", "-n", b.netns, "link", "set", "rfbare0", "master", "nat0", "up") == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return b.sshUp(bareAddr, t0)
}
