// Command boot measures, in one run and alternating so machine drift hits
// both sides equally:
//
//   - create -> ready line through ringfence (CLI `create`, then the ready
//     line read from the daemon's console stream) versus the same kernel,
//     initrd, command line and disk through a bare qemu-system-x86_64;
//   - `ringfence list` latency with 50 domains defined.
//
// Run as root: go run ./bench/boot [-runs 7] [-image DIR]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/image"
)

func main() {
	runs := flag.Int("runs", 7, "boots per side")
	imgDir := flag.String("image", "/var/lib/ringfence/images/default", "default image dir")
	listN := flag.Int("list-domains", 50, "domains defined for the list benchmark")
	flag.Parse()
	if err := run(*runs, *imgDir, *listN); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(runs int, imgDir string, listN int) error {
	img := image.PathsIn(imgDir)
	if !img.Built() {
		return fmt.Errorf("no default image in %s: run `make image`", imgDir)
	}
	dir, bin, cleanup, err := benchenv.Workdir("/tmp", "rfbench")
	if err != nil {
		return err
	}
	defer cleanup()
	c, stop, err := benchenv.Daemon(bin, filepath.Join(dir, "state"), "--vcpu-ratio", "50")
	if err != nil {
		return err
	}
	defer stop()
	sock := c.Socket
	h, _ := c.Host(context.Background())
	disk := filepath.Join(dir, "disk.img")
	exec.Command("cp", "--sparse=always", img.Disk, disk).Run()
	cmdline := "console=ttyS0 quiet"
	cfg := filepath.Join(dir, "bench.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf("name='bench'\nkernel='%s'\nramdisk='%s'\nmemory=128\nvcpus=1\ncmdline='%s'\ndisk=['file:%s,xvda,w']\n",
		img.Kernel, img.Initrd, cmdline, disk)), 0o644)

	fmt.Printf("accelerator %s, QEMU %s, %d runs per side, alternating\n", h.Accel, h.QEMUVersion, runs)
	var rf, bare []time.Duration
	for i := 0; i < runs; i++ {
		d, err := bootRingfence(bin, sock, c, cfg)
		if err != nil {
			return err
		}
		b, err := bootBare(h.Accel, img, cmdline, disk)
		if err != nil {
			return err
		}
		rf, bare = append(rf, d), append(bare, b)
		fmt.Printf("run %d: ringfence %6.0f ms   bare qemu %6.0f ms\n", i+1, ms(d), ms(b))
	}
	var ratios []float64
	for i := range rf {
		ratios = append(ratios, float64(rf[i])/float64(bare[i]))
	}
	mr, mb := median(rf), median(bare)
	fmt.Printf("\ncreate -> ready line: ringfence median %.0f ms, bare QEMU median %.0f ms\n", ms(mr), ms(mb))
	fmt.Printf("overhead: %+.0f ms (%+.1f%%); median of per-run ratios %.3f\n", ms(mr-mb), 100*(float64(mr)/float64(mb)-1), medianF(ratios))

	lat, apiLat, err := listLatency(bin, sock, c, img, listN)
	if err != nil {
		return err
	}
	res := map[string]any{"accel": h.Accel, "ringfence_ms": msAll(rf), "bare_ms": msAll(bare), "median_ratio": medianF(ratios),
		"overhead_ms": ms(mr - mb), "list_ms": ms(median(lat)), "list_api_ms": ms(median(apiLat)), "list_domains": listN,
		"cpus": host.CPUs(), "date": time.Now().UTC().Format(time.RFC3339)}
	b, _ := json.MarshalIndent(res, "", "  ")
	os.MkdirAll("bench/results", 0o755)
	os.WriteFile("bench/results/boot.json", b, 0o644)
	return nil
}

// listLatency times `ringfence list` (the CLI process, and the API call
// alone) with listN domains defined, paused so 50 fit on a small host.
func listLatency(bin, sock string, c *client.Client, img image.Paths, listN int) (lat, apiLat []time.Duration, err error) {
	for i := 0; i < listN; i++ {
		spec := api.DomainSpec{Name: fmt.Sprintf("l%02d", i), Kernel: img.Kernel, Ramdisk: img.Initrd, MemoryMiB: 32}
		if _, err := c.Create(context.Background(), api.CreateRequest{Spec: spec, Paused: true}); err != nil {
			return nil, nil, fmt.Errorf("defining domain %d for the list benchmark: %w", i, err)
		}
	}
	for i := 0; i < 30; i++ {
		t0 := time.Now()
		out, err := exec.Command(bin, "--socket", sock, "list").Output()
		if err != nil {
			return nil, nil, err
		}
		lat = append(lat, time.Since(t0))
		if n := strings.Count(string(out), "\n"); n != listN+1 {
			return nil, nil, fmt.Errorf("list printed %d lines, want %d", n, listN+1)
		}
		t0 = time.Now()
		if _, err := c.List(context.Background()); err != nil {
			return nil, nil, err
		}
		apiLat = append(apiLat, time.Since(t0))
	}
	fmt.Printf("`ringfence list` with %d domains: median %.1f ms (CLI process), %.2f ms (API call alone)\n", listN, ms(median(lat)), ms(median(apiLat)))
	for i := 0; i < listN; i++ {
		c.Action(context.Background(), fmt.Sprintf("l%02d", i), "destroy", nil)
	}
	return lat, apiLat, nil
}

func bootRingfence(bin, sock string, c *client.Client, cfg string) (time.Duration, error) {
	t0 := time.Now()
	if out, err := exec.Command(bin, "--socket", sock, "create", cfg).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("create: %v: %s", err, out)
	}
	conn, err := c.Console(context.Background(), "bench", true)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := benchenv.WaitFor(conn, image.ReadyLine, 120*time.Second); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	return d, c.Action(context.Background(), "bench", "destroy", nil)
}

func bootBare(accel string, img image.Paths, cmdline, disk string) (time.Duration, error) {
	t0 := time.Now()
	cmd := exec.Command("qemu-system-x86_64", "-machine", "q35,accel="+accel, "-m", "128M", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
		"-kernel", img.Kernel, "-initrd", img.Initrd, "-append", cmdline,
		"-drive", "if=none,id=d0,format=raw,file="+disk, "-device", "virtio-blk-pci,drive=d0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if err := benchenv.WaitFor(out, image.ReadyLine, 120*time.Second); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func msAll(ds []time.Duration) []float64 {
	var out []float64
	for _, d := range ds {
		out = append(out, ms(d))
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func medianF(fs []float64) float64 {
	s := append([]float64(nil), fs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
