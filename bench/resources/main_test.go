package resources

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/image"
)

// TestTopRefresh200 measures one top refresh with 200 running domains
// (paused, 16 MiB each): the daemon's sampling cost and the API call.
// It is a benchmark, not a check: it runs only with RINGFENCE_BENCH=1
// (`make bench`) and prints its figures.
func TestTopRefresh200(t *testing.T) {
	if os.Getenv("RINGFENCE_BENCH") != "1" {
		t.Skip("benchmark: run with RINGFENCE_BENCH=1 (make bench)")
	}
	n := 200
	if v, err := strconv.Atoi(os.Getenv("RINGFENCE_BENCH_DOMAINS")); err == nil {
		n = v
	}
	img := image.PathsIn("/var/lib/ringfence/images/default")
	dir, _ := os.MkdirTemp("/tmp", "rfbench")
	defer os.RemoveAll(dir)
	bin, err := benchenv.Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, stop, err := benchenv.Daemon(bin, dir, "--vcpu-ratio", "200", "--qemu-overhead", "64", "--reserve-mem", "1024")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	defer func() {
		for i := 0; i < n; i++ {
			c.Action(context.Background(), fmt.Sprintf("t%03d", i), "destroy", nil)
		}
	}()
	for i := 0; i < n; i++ {
		spec := api.DomainSpec{Name: fmt.Sprintf("t%03d", i), Kernel: img.Kernel, Ramdisk: img.Initrd, MemoryMiB: 16}
		if _, err := c.Create(context.Background(), api.CreateRequest{Spec: spec, Paused: true}); err != nil {
			t.Fatalf("domain %d: %v", i, err)
		}
	}
	var sample, call []float64
	for i := 0; i < 10; i++ {
		time.Sleep(1100 * time.Millisecond)
		t0 := time.Now()
		s, err := c.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		call = append(call, float64(time.Since(t0).Microseconds())/1000)
		if len(s.Domains) != n {
			t.Fatalf("%d domains in stats", len(s.Domains))
		}
		sample = append(sample, s.SampleMs)
	}
	sort.Float64s(sample)
	sort.Float64s(call)
	fmt.Printf("top refresh with %d domains: daemon sample median %.1f ms (%.2f ms per domain), GET /stats median %.1f ms\n",
		n, sample[len(sample)/2], sample[len(sample)/2]/float64(n), call[len(call)/2])
}
