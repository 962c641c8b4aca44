// Command overhead measures QEMU's memory beyond guest RAM, the figure a
// domain's guarantee must hold (the ledger counts it, the cgroup allows
// it): for the default guest (busybox userland) and a real Debian 12
// server (systemd userland), each booted and then put to work, side by
// side in one run:
//
//   - bare QEMU with guest RAM preallocated and TCG's translation buffer
//     at QEMU's default (1 GiB);
//   - bare QEMU, the same, with the buffer capped as Ringfence caps it;
//   - Ringfence at its default settings (its QEMU, in its cgroup).
//
// Overhead = the QEMU process's peak RSS (VmHWM) minus guest RAM (all of
// it resident: preallocated); for Ringfence also the cgroup's peak, which
// counts the page cache its disk I/O brought in (reclaimable). The
// engine's model (what the guarantee holds) is printed next to them.
//
// Run as root after `make image`: go run ./bench/overhead [-runs 2]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/engine/qemu"
	"github.com/ringfence/ringfence/internal/image"
)

// guest is one workload.
type guest struct {
	name         string
	memMiB, cpus int
	kernel, init string
	disk         string // raw image, copied per run
	cmdline      string
	ready        string   // console text that says it booted
	loginFirst   bool     // answer a login prompt (root) before working
	work         []string // shell lines typed once ready
}

func main() {
	runs := flag.Int("runs", 2, "runs per side and guest")
	imgDir := flag.String("image", "/var/lib/ringfence/images/default", "default image dir")
	debDir := flag.String("debian", "/var/lib/ringfence/images/debian12", "Debian 12 test image dir (built if missing)")
	flag.Parse()
	if err := run(*runs, *imgDir, *debDir); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(runs int, imgDir, debDir string) error {
	img := image.PathsIn(imgDir)
	if !img.Built() {
		return fmt.Errorf("no default image in %s: run `make image`", imgDir)
	}
	deb, err := image.BuildDebian(debDir, os.Stderr)
	if err != nil {
		return err
	}
	dir, bin, cleanup, err := benchenv.Workdir("/var/tmp", "rfover")
	if err != nil {
		return err
	}
	defer cleanup()
	c, stop, err := benchenv.Daemon(bin, filepath.Join(dir, "state"))
	if err != nil {
		return err
	}
	defer stop()
	h, _ := c.Host(context.Background())
	work := "for i in 1 2 3; do find / -xdev >/dev/null 2>&1; for f in /bin/* /sbin/*; do md5sum $f >/dev/null 2>&1; done; done; echo work-$((6*7))"
	guests := []guest{
		{name: "default (busybox)", memMiB: 128, cpus: 1, kernel: img.Kernel, init: img.Initrd, disk: img.Disk,
			cmdline: "console=ttyS0 quiet", ready: image.ReadyLine, work: []string{work}},
		{name: "debian 12 (systemd)", memMiB: 512, cpus: 2, kernel: deb.Kernel, init: deb.Initrd, disk: deb.Root,
			cmdline: "root=/dev/vda ro console=ttyS0", ready: "login:", loginFirst: true,
			work: []string{"systemctl is-system-running --wait; systemctl restart lighttpd; " +
				"for i in 1 2; do find / -xdev >/dev/null 2>&1; for f in /usr/bin/*; do md5sum $f >/dev/null 2>&1; done; gzip -c /boot/initrd.img >/dev/null; done; echo work-$((6*7))"}},
	}
	fmt.Printf("accelerator %s, QEMU %s; overhead = peak RSS (VmHWM) - guest RAM (preallocated), median of %d runs\n", h.Accel, h.QEMUVersion, runs)
	fmt.Printf("%-21s %-26s %8s %9s %9s %8s\n", "guest", "side", "boot s", "peak MiB", "overhead", "cgroup")
	results := map[string]any{}
	for _, g := range guests {
		model := (&qemu.Engine{}).OverheadMiB(engine.LaunchSpec{Accel: h.Accel, MemoryMiB: g.memMiB, VCPUs: g.cpus, MaxVCPUs: g.cpus})
		sides := []struct {
			name string
			fn   func() (sample, error)
		}{
			{"bare, tb default (1 GiB)", func() (sample, error) { return bare(dir, h.Accel, g, 0) }},
			{fmt.Sprintf("bare, tb-size=%d", qemu.TCGBufferFor(g.memMiB)), func() (sample, error) {
				return bare(dir, h.Accel, g, qemu.TCGBufferFor(g.memMiB))
			}},
			{"ringfence", func() (sample, error) { return viaRingfence(dir, c, g) }},
		}
		for _, s := range sides {
			var got []sample
			for i := 0; i < runs; i++ {
				x, err := s.fn()
				if err != nil {
					return fmt.Errorf("%s, %s: %w", g.name, s.name, err)
				}
				got = append(got, x)
			}
			m := medianSample(got)
			cg := "-"
			if m.cgroupMiB > 0 {
				cg = strconv.Itoa(m.cgroupMiB - g.memMiB)
			}
			fmt.Printf("%-21s %-26s %8.1f %9d %9d %8s\n", g.name, s.name, m.boot.Seconds(), m.peakMiB, m.peakMiB-g.memMiB, cg)
			results[g.name+" / "+s.name] = map[string]any{"boot_s": m.boot.Seconds(), "peak_mib": m.peakMiB, "overhead_mib": m.peakMiB - g.memMiB, "cgroup_peak_mib": m.cgroupMiB}
		}
		fmt.Printf("%-21s %-26s %8s %9s %9d\n", g.name, "model (the guarantee)", "", "", model)
		results[g.name+" / model"] = model
	}
	b, _ := json.MarshalIndent(map[string]any{"accel": h.Accel, "date": time.Now().UTC().Format(time.RFC3339), "results": results}, "", "  ")
	os.MkdirAll("bench/results", 0o755)
	return os.WriteFile("bench/results/overhead.json", b, 0o644)
}

type sample struct {
	boot      time.Duration
	peakMiB   int
	cgroupMiB int
}

func medianSample(s []sample) sample {
	sort.Slice(s, func(i, j int) bool { return s[i].peakMiB < s[j].peakMiB })
	return s[len(s)/2]
}

// copyDisk gives each run its own copy (sparse) of the image.
func copyDisk(dir, src string) (string, error) {
	dst := filepath.Join(dir, fmt.Sprintf("disk-%d.img", time.Now().UnixNano()))
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v: %s", err, out)
	}
	return dst, nil
}

// drive answers the login prompt if needed and types the work, reading
// the console from r and typing into w; it returns the boot time.
func drive(r io.Reader, w io.Writer, g guest, t0 time.Time) (time.Duration, error) {
	con := newConsole(r)
	if err := con.wait(g.ready, 300*time.Second); err != nil {
		return 0, err
	}
	boot := time.Since(t0)
	if g.loginFirst {
		fmt.Fprintln(w, "root")
		if err := con.wait("Password:", 30*time.Second); err != nil {
			return 0, err
		}
		fmt.Fprintln(w, image.DebianRootPassword)
		if err := con.wait("root@", 60*time.Second); err != nil {
			return 0, err
		}
	}
	for _, l := range g.work {
		fmt.Fprintln(w, l)
	}
	return boot, con.wait("work-42", 600*time.Second)
}

func bare(dir, accel string, g guest, tb int) (sample, error) {
	disk, err := copyDisk(dir, g.disk)
	if err != nil {
		return sample{}, err
	}
	defer os.Remove(disk)
	acc := accel
	if accel == "tcg" && tb > 0 {
		acc = fmt.Sprintf("tcg,tb-size=%d", tb)
	}
	t0 := time.Now()
	cmd := exec.Command("qemu-system-x86_64", "-machine", "q35", "-accel", acc, "-m", fmt.Sprintf("%dM", g.memMiB), "-mem-prealloc",
		"-smp", strconv.Itoa(g.cpus), "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
		"-kernel", g.kernel, "-initrd", g.init, "-append", g.cmdline,
		"-drive", "if=none,id=d0,format=raw,file="+disk, "-device", "virtio-blk-pci,drive=d0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return sample{}, err
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return sample{}, err
	}
	if err := cmd.Start(); err != nil {
		return sample{}, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	boot, err := drive(out, in, g, t0)
	if err != nil {
		return sample{}, err
	}
	return sample{boot: boot, peakMiB: hwm(cmd.Process.Pid)}, nil
}

func viaRingfence(dir string, c *client.Client, g guest) (sample, error) {
	disk, err := copyDisk(dir, g.disk)
	if err != nil {
		return sample{}, err
	}
	defer os.Remove(disk)
	spec := api.DomainSpec{Name: "over", Kernel: g.kernel, Ramdisk: g.init, MemoryMiB: g.memMiB, VCPUs: g.cpus, Cmdline: g.cmdline,
		Disks: []api.Disk{{Target: disk, VDev: "xvda", Format: "raw", Access: "rw"}}}
	ctx := context.Background()
	t0 := time.Now()
	if _, err := c.Create(ctx, api.CreateRequest{Spec: spec}); err != nil {
		return sample{}, err
	}
	defer c.Action(ctx, "over", "destroy", nil)
	conn, err := c.Console(ctx, "over", true)
	if err != nil {
		return sample{}, err
	}
	defer conn.Close()
	boot, err := drive(conn, conn, g, t0)
	if err != nil {
		return sample{}, err
	}
	d, err := c.Get(ctx, "over")
	if err != nil {
		return sample{}, err
	}
	if d.ID != 1 && d.PID == 0 {
		return sample{}, fmt.Errorf("the domain restarted (id %d): killed by its guarantee?", d.ID)
	}
	return sample{boot: boot, peakMiB: hwm(d.PID), cgroupMiB: cgroupPeak(d.PID)}, nil
}

// hwm is a process's peak RSS in MiB.
func hwm(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	kb, _ := strconv.Atoi(string(m[1]))
	return kb / 1024
}

// cgroupPeak is the peak memory of the process's memory cgroup in MiB
// (v1 max_usage_in_bytes, v2 memory.peak).
func cgroupPeak(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		var file string
		switch {
		case strings.Contains(","+parts[1]+",", ",memory,"):
			file = filepath.Join("/sys/fs/cgroup/memory", parts[2], "memory.max_usage_in_bytes")
		case parts[1] == "":
			file = filepath.Join("/sys/fs/cgroup", parts[2], "memory.peak")
		default:
			continue
		}
		if b, err := os.ReadFile(file); err == nil {
			n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			return int(n >> 20)
		}
	}
	return 0
}

// console accumulates a stream so waits never miss text split across
// reads.
type console struct {
	ch  chan []byte
	buf strings.Builder
}

func newConsole(r io.Reader) *console {
	c := &console{ch: make(chan []byte, 64)}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			if n > 0 {
				c.ch <- append([]byte(nil), b[:n]...)
			}
			if err != nil {
				close(c.ch)
				return
			}
		}
	}()
	return c
}

func (c *console) wait(text string, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		if i := strings.Index(c.buf.String(), text); i >= 0 {
			rest := c.buf.String()[i+len(text):]
			c.buf.Reset()
			c.buf.WriteString(rest)
			return nil
		}
		select {
		case b, ok := <-c.ch:
			if !ok {
				return fmt.Errorf("console closed before %q", text)
			}
			c.buf.Write(b)
		case <-deadline:
			return fmt.Errorf("%q did not appear within %s", text, timeout)
		}
	}
}
