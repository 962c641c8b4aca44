// Command clone measures `volume create --from` (a thin qcow2 clone)
// against templates of 1 GiB and 20 GiB: the time must not grow with the
// template. A full copy of the 1 GiB template is timed once for scale.
//
// Run as root: go run ./bench/clone
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
	"github.com/ringfence/ringfence/internal/api"
)

func main() {
	n := flag.Int("n", 15, "clones per template")
	flag.Parse()
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(n int) error {
	dir, bin, cleanup, err := benchenv.Workdir("/var/tmp", "rfclone")
	if err != nil {
		return err
	}
	defer cleanup()
	c, stop, err := benchenv.Daemon(bin, filepath.Join(dir, "state"))
	if err != nil {
		return err
	}
	defer stop()
	ctx := context.Background()
	pool := filepath.Join(dir, "pool")
	if _, err := c.CreatePool(ctx, api.Pool{Name: "bench", Dir: pool}); err != nil {
		return err
	}
	fmt.Printf("%-10s %6s %12s %12s %12s\n", "template", "clones", "median ms", "min ms", "max ms")
	for _, gib := range []int64{1, 20} {
		name := fmt.Sprintf("tpl%dg.img", gib)
		// Allocated, not sparse: a clone must not depend on how full the
		// template is.
		if out, err := exec.Command("fallocate", "-l", fmt.Sprint(gib<<30), filepath.Join(pool, name)).CombinedOutput(); err != nil {
			return fmt.Errorf("fallocate: %v: %s", err, out)
		}
		var ms []float64
		for i := 0; i < n; i++ {
			t0 := time.Now()
			if _, err := c.CreateVolume(ctx, "bench", api.VolumeRequest{Name: fmt.Sprintf("c%d-%d.qcow2", gib, i), From: name}); err != nil {
				return err
			}
			ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
		}
		sort.Float64s(ms)
		fmt.Printf("%-10s %6d %12.1f %12.1f %12.1f\n", fmt.Sprintf("%d GiB", gib), n, ms[len(ms)/2], ms[0], ms[len(ms)-1])
	}
	t0 := time.Now()
	if out, err := exec.Command("cp", "--sparse=never", filepath.Join(pool, "tpl1g.img"), filepath.Join(dir, "full-copy.img")).CombinedOutput(); err != nil {
		return fmt.Errorf("cp: %v: %s", err, out)
	}
	fmt.Printf("for scale: a full copy (cp) of the 1 GiB template took %.0f ms\n", float64(time.Since(t0).Milliseconds()))
	return nil
}
