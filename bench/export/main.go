// Command export measures `ringfence export` and `import` of a running
// domain against `tar | zstd` and `zstd -d | tar -x` of the same files
// (kernel, initrd, disk), in one run. The disk is 512 MiB: 128 MiB of
// random data (incompressible) and the rest never written.
//
// Run as root after `make image`: go run ./bench/export
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/image"
)

func main() {
	imgDir := flag.String("image", "/var/lib/ringfence/images/default", "default image")
	flag.Parse()
	if err := run(image.PathsIn(*imgDir)); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func sh(script string) (time.Duration, error) {
	t0 := time.Now()
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%s: %v: %s", script, err, out)
	}
	return time.Since(t0), nil
}

func run(img image.Paths) error {
	dir, bin, cleanup, err := benchenv.Workdir("/var/tmp", "rfexport")
	if err != nil {
		return err
	}
	defer cleanup()
	a, stopA, err := benchenv.Daemon(bin, filepath.Join(dir, "a"))
	if err != nil {
		return err
	}
	defer stopA()
	b, stopB, err := benchenv.Daemon(bin, filepath.Join(dir, "b"))
	if err != nil {
		return err
	}
	defer stopB()
	disk := filepath.Join(dir, "disk.img")
	if _, err := sh(fmt.Sprintf("dd if=/dev/urandom of=%s bs=1M count=128 status=none && truncate -s 512M %s", disk, disk)); err != nil {
		return err
	}
	ctx := context.Background()
	spec := api.DomainSpec{Name: "bench", Kernel: img.Kernel, Ramdisk: img.Initrd, MemoryMiB: 128, Cmdline: "console=ttyS0 quiet",
		Disks: []api.Disk{{Target: disk, VDev: "xvda", Format: "raw", Access: "rw"}}}
	if _, err := a.Create(ctx, api.CreateRequest{Spec: spec}); err != nil {
		return err
	}
	defer a.Action(ctx, "bench", "destroy", nil)
	input := int64(0)
	for _, p := range []string{img.Kernel, img.Initrd, disk} {
		fi, _ := os.Stat(p)
		input += fi.Size()
	}
	mb := float64(input) / (1 << 20)
	archive := filepath.Join(dir, "bench.rfx")
	t0 := time.Now()
	res, err := a.Export(ctx, "bench", api.ExportRequest{Path: archive}, nil)
	if err != nil {
		return err
	}
	exp := time.Since(t0)
	tarOut := filepath.Join(dir, "bench.tar.zst")
	tz, err := sh(fmt.Sprintf("tar -cf - %s %s %s | zstd -q -1 -T1 -o %s", img.Kernel, img.Initrd, disk, tarOut))
	if err != nil {
		return err
	}
	t0 = time.Now()
	if _, err := b.Import(ctx, api.ImportRequest{Path: archive}, nil); err != nil {
		return err
	}
	imp := time.Since(t0)
	defer b.Action(ctx, "bench", "destroy", nil)
	untar := filepath.Join(dir, "untar")
	os.MkdirAll(untar, 0o700)
	uz, err := sh(fmt.Sprintf("zstd -q -d -c %s | tar -xf - -C %s", tarOut, untar))
	if err != nil {
		return err
	}
	tfi, _ := os.Stat(tarOut)
	fmt.Printf("input %.0f MiB (kernel, initrd, 512 MiB disk with 128 MiB random)\n", mb)
	fmt.Printf("%-28s %8s %10s %12s\n", "", "ms", "MiB/s", "output MiB")
	fmt.Printf("%-28s %8d %10.0f %12.1f\n", "ringfence export (running)", exp.Milliseconds(), mb/exp.Seconds(), float64(res.Bytes)/(1<<20))
	fmt.Printf("%-28s %8d %10.0f %12.1f\n", "tar | zstd -1", tz.Milliseconds(), mb/tz.Seconds(), float64(tfi.Size())/(1<<20))
	fmt.Printf("%-28s %8d %10.0f %12s\n", "ringfence import (+create)", imp.Milliseconds(), mb/imp.Seconds(), "")
	fmt.Printf("%-28s %8d %10.0f %12s\n", "zstd -d | tar -x", uz.Milliseconds(), mb/uz.Seconds(), "")
	return nil
}
