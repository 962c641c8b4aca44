// Command usage measures what usage accounting costs the daemon: N
// simulated domains (default 1,000) sampled every interval (default
// 10 s), each reading what the daemon reads per domain — a cgroup CPU
// file, a vCPU thread's schedstat, two tap counters and a QMP
// query-blockstats reply to decode — fed to the real usage ledger
// (internal/usage), whose flush is written to a real bbolt file with
// fsync, one transaction per sample, as the daemon's store does.
//
// The rounds run back to back on a simulated clock (interval apart, so
// hour boundaries close records as they would), and the process's own
// CPU time (getrusage: user + system, every goroutine) is divided by the
// simulated interval: the share of one core that accounting takes. A
// round whose wall time exceeds the interval would back up.
//
// Run: go run ./bench/usage [-domains 1000] [-interval 10s] [-rounds 400]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/network"
	"github.com/ringfence/ringfence/internal/procfs"
	"github.com/ringfence/ringfence/internal/store/memstore"
	"github.com/ringfence/ringfence/internal/usage"
)

// blockstats is a QMP query-blockstats reply for one disk, as QEMU 7.2
// sends it (abridged to the fields the daemon reads, and some it skips).
const blockstats = `{"return":[{"device":"","node-name":"vda","qdev":"/machine/peripheral/vda/virtio-backend",` +
	`"stats":{"rd_bytes":%d,"wr_bytes":%d,"rd_operations":%d,"wr_operations":%d,"flush_operations":0,` +
	`"rd_total_time_ns":123456,"wr_total_time_ns":654321,"flush_total_time_ns":0,"invalid_rd_operations":0,` +
	`"failed_rd_operations":0,"unmap_bytes":0,"account_invalid":true,"account_failed":true,"idle_time_ns":1000}}]}`

type qmpReply struct {
	Return []struct {
		NodeName string `json:"node-name"`
		Stats    struct {
			RdBytes int64 `json:"rd_bytes"`
			WrBytes int64 `json:"wr_bytes"`
			RdOps   int64 `json:"rd_operations"`
			WrOps   int64 `json:"wr_operations"`
		} `json:"stats"`
	} `json:"return"`
}

func main() {
	n := flag.Int("domains", 1000, "simulated domains")
	interval := flag.Duration("interval", 10*time.Second, "sampling interval (simulated)")
	rounds := flag.Int("rounds", 400, "samples")
	out := flag.String("out", "bench/results/usage.json", "where the figures go (\"\": nowhere)")
	prof := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.BoolVar(&readCounters, "reads", true, "read the simulated counters as the daemon does (false: the ledger alone)")
	flag.Parse()
	stopProfile := benchenv.CPUProfile(*prof)
	defer stopProfile()
	if err := run(*n, *interval, *rounds, *out); err != nil {
		fmt.Fprintln(os.Stderr, "usage bench:", err)
		stopProfile()
		os.Exit(1)
	}
}

// readCounters: each round reads every domain's files (else only the
// ledger's work is measured).
var readCounters = true

// sim is one simulated domain: its counters, which grow every round.
type sim struct {
	name, cgroup string
	cpu, bytes   int64
}

func run(n int, interval time.Duration, rounds int, out string) error {
	dir, err := os.MkdirTemp("", "usage-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o600, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	st := memstore.New()
	// Every transaction the ledger commits is written to the bolt file
	// too, fsynced, before it counts as committed (as the daemon's store).
	st.FailUpdates(func(writes map[string][]byte) error {
		return db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("state"))
			if err != nil {
				return err
			}
			for k, v := range writes {
				if v == nil {
					err = b.Delete([]byte(k))
				} else {
					err = b.Put([]byte(k), v)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
	})
	clock := time.Date(2026, 12, 1, 0, 58, 0, 0, time.UTC)
	l := usage.New(st)
	l.Now = func() time.Time { return clock }
	ctx := context.Background()
	doms := make([]*sim, n)
	for i := range doms {
		d := &sim{name: fmt.Sprintf("dom%04d", i), cgroup: filepath.Join(dir, fmt.Sprintf("cg%04d", i))}
		doms[i] = d
		alloc := api.UsageAlloc{State: api.StateRunning, Tenant: "t" + strconv.Itoa(i%20), VCPUs: 2, MaxMemMiB: 2048, MemMiB: 2048,
			Disks: []api.UsageDisk{{VDev: "xvda", Bytes: 20 << 30}}, Vifs: []string{"00:16:3e:00:00:01"}}
		if err := l.Change(d.name, alloc, nil).Commit(ctx, st); err != nil {
			return err
		}
	}
	tid := syscall.Gettid()
	var cpuPer, wallPer []time.Duration
	for r := 0; r < rounds; r++ {
		// The domains run meanwhile (not counted: their counters move).
		for _, d := range doms {
			d.cpu += int64(interval) / 3
			d.bytes += 1 << 20
			os.WriteFile(d.cgroup, []byte(strconv.FormatInt(d.cpu, 10)+"\n"), 0o644)
		}
		clock = clock.Add(interval)
		c0, w0 := cpuTime(), time.Now()
		if err := sample(ctx, l, doms, tid); err != nil {
			return err
		}
		cpuPer, wallPer = append(cpuPer, cpuTime()-c0), append(wallPer, time.Since(w0))
	}
	return report(n, interval, rounds, cpuPer, wallPer, st, out)
}

// sample is one round: each domain read as the daemon reads it, then one
// flush.
func sample(ctx context.Context, l *usage.Ledger, doms []*sim, tid int) error {
	if readCounters {
		network.AllTapCounters() // every tap's counters: one netlink dump a sample
	}
	for _, d := range doms {
		cpu, wait := d.cpu, d.cpu/10
		if readCounters {
			b, err := procfs.ReadCounter(d.cgroup)
			if err != nil {
				return err
			}
			cpu, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			_, wait, _ = procfs.SchedStat(os.Getpid(), tid) // a vCPU thread's

		}
		var q qmpReply
		if err := json.Unmarshal([]byte(fmt.Sprintf(blockstats, d.bytes, d.bytes/2, d.bytes>>12, d.bytes>>13)), &q); err != nil {
			return err
		}
		disks := map[string]usage.DiskIO{}
		for _, r := range q.Return {
			disks[r.NodeName] = usage.DiskIO{RdBytes: r.Stats.RdBytes, WrBytes: r.Stats.WrBytes, RdOps: r.Stats.RdOps, WrOps: r.Stats.WrOps}
		}
		l.Observe(d.name, usage.Raw{Incarnation: "1", CPUNs: cpu, Steal: map[string]int64{strconv.Itoa(tid): wait}, Disks: disks,
			Vifs: map[string]api.UsageNet{"00:16:3e:00:00:01": {RxBytes: d.bytes, TxBytes: d.bytes / 4, RxPackets: d.bytes >> 10, TxPackets: d.bytes >> 12}}})
	}
	return l.Flush(ctx)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func report(n int, interval time.Duration, rounds int, cpuPer, wallPer []time.Duration, st *memstore.Mem, out string) error {
	var cpu, maxWall time.Duration
	for i := range cpuPer {
		cpu += cpuPer[i]
		maxWall = max(maxWall, wallPer[i])
	}
	mean := cpu / time.Duration(rounds)
	share := float64(mean) / float64(interval) // of one core
	res := map[string]any{
		"domains": n, "interval_s": interval.Seconds(), "rounds": rounds,
		"cpu_per_round_ms_mean": float64(mean.Microseconds()) / 1000, "cpu_per_round_ms_median": float64(median(cpuPer).Microseconds()) / 1000,
		"wall_per_round_ms_median": float64(median(wallPer).Microseconds()) / 1000, "wall_per_round_ms_max": float64(maxWall.Microseconds()) / 1000,
		"core_share_pct": 100 * share, "ratio_to_1pct_budget": share / 0.01, "backs_up": maxWall >= interval,
		"closed_records": len(st.Keys("usage/rec/")),
	}
	fmt.Printf("%d domains every %s: CPU per round mean %.1f ms (median %.1f), wall median %.1f ms, max %.1f ms\n",
		n, interval, res["cpu_per_round_ms_mean"], res["cpu_per_round_ms_median"], res["wall_per_round_ms_median"], res["wall_per_round_ms_max"])
	fmt.Printf("share of one core: %.3f%% = %.2f of the 1%% budget; backs up: %v; records closed at the hour: %d\n",
		100*share, share/0.01, maxWall >= interval, res["closed_records"])
	if out == "" {
		return nil
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	os.MkdirAll(filepath.Dir(out), 0o755)
	return os.WriteFile(out, append(b, '\n'), 0o644)
}
