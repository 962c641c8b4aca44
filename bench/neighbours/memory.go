package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ringfence/ringfence/internal/procfs"
)

// memoryVariants: the neighbour allocates until it is killed, under
// Ringfence (its RAM preallocated in its own cgroup, the ledger never
// oversells) and under bare QEMU on a host with room, and — where the
// memory controller is cgroup v1, so the bench can play a small host —
// on an oversold one.
func (b *bench) memoryVariants() []variant {
	rf, bare := b.rf, b.bare
	vs := []variant{
		b.memoryVariant("ringfence", "neighbour OOM at its own 128 MiB", true, rf.victim, rf.noisy, rf),
		b.memoryVariant("bare", "host with room", false, bare.victim, bare.noisy, bare),
	}
	if _, v1, err := memCgroupDir(os.Getpid()); err == nil && v1 {
		v := b.memoryVariant("bare", "host oversold (guests' RAM > host's)", false, bare.victim, bare.noisy, bare)
		v.smoke = false
		var undo func()
		v.setup = func() (err error) {
			if err := b.apart(bare.victim, bare.noisy)(); err != nil {
				return err
			}
			undo, err = b.bare.oversell()
			return err
		}
		v.teardown = func() {
			if undo != nil {
				undo()
			}
		}
		vs = append(vs, v)
	}
	return vs
}

func (b *bench) memoryVariant(side, name string, guarded bool, vic, nb *guest, s sampler) variant {
	var off int
	return variant{scenario: "memory", side: side, name: name, guarded: guarded, smoke: true, victim: vic, neigh: nb, sampler: s,
		setup: b.apart(vic, nb),
		misbehave: func() error {
			off = nb.con.Len()
			return nb.spawn("hog")
		},
		after:   func(r *result) error { return b.afterHog(r, vic, nb, off) },
		calm:    nb.calm,
		victimM: b.memoryVictim(vic),
	}
}

// memoryVictim: the victim walks its 32 MiB working set, runs the wake-up
// probe, walks again; its QEMU's major faults, its resident size and the
// host's swap-outs are read around it.
func (b *bench) memoryVictim(g *guest) func() (map[string]float64, error) {
	return func() (map[string]float64, error) {
		maj, sw := g.majflt(), pswpout()
		var w struct {
			WalkMs   []float64 `json:"walk_ms"`
			Lat      latStats  `json:"lat"`
			GuestMaj float64   `json:"guest_majflt"`
		}
		err := g.probe(fmt.Sprintf("walk /tmp/ws %.2f", b.s.phase.Seconds()), 2*time.Minute, &w)
		if err != nil && !g.alive() {
			return map[string]float64{"victim_killed": 1}, nil // the host's OOM killer took it: afterHog says so
		}
		if err != nil {
			return nil, err
		}
		walk := 0.0
		for _, x := range w.WalkMs {
			walk = max(walk, x)
		}
		return map[string]float64{"walk_ms": walk, "lat_p99_us": w.Lat.P99, "lat_p50_us": w.Lat.P50, "guest_majflt": w.GuestMaj,
			"qemu_majflt": float64(g.majflt() - maj), "host_pswpout": pswpout() - sw, "victim_rss_mib": g.rssMiB()}, nil
	}
}

// afterHog waits for the neighbour's hog to be killed (inside its guest,
// or its whole QEMU by the host), notes who was killed, and starts a
// guest the host killed again.
func (b *bench) afterHog(r *result, vic, nb *guest, off int) error {
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) && nb.alive() && vic.alive() && !strings.Contains(nb.con.Output()[off:], "Out of memory") {
		time.Sleep(100 * time.Millisecond)
	}
	switch {
	case !vic.alive():
		r.note("the host's OOM killer killed the VICTIM's QEMU")
		r.With["victim_killed"] = append(r.With["victim_killed"], 1)
	case !nb.alive():
		r.note("the host's OOM killer killed the neighbour's QEMU (its whole guest)")
	case strings.Contains(nb.con.Output()[off:], "Out of memory"):
		r.note("the neighbour's hog was OOM-killed inside its own guest")
	default:
		out := nb.con.Output()
		return fmt.Errorf("the neighbour's hog was not killed within 90 s; its console:\n%s", out[max(off, len(out)-1500):])
	}
	if nb.side == "ringfence" {
		if n := cgroupOOMKills(nb.pid); n > 0 {
			r.note("the neighbour's cgroup killed %d processes at its limit", n)
		}
	}
	for _, g := range []*guest{vic, nb} {
		if !g.alive() {
			if err := b.bare.restart(g); err != nil {
				return err
			}
		}
	}
	return nil
}

// memCgroupDir is the memory cgroup of pid, and whether it is cgroup v1's
// memory hierarchy (else the v2 unified one).
func memCgroupDir(pid int) (string, bool, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", false, err
	}
	mounts, err := procfs.Mountinfo("")
	if err != nil {
		return "", false, err
	}
	var v1, v2 string
	for _, l := range strings.Split(string(b), "\n") {
		p := strings.SplitN(l, ":", 3)
		if len(p) != 3 {
			continue
		}
		for _, c := range strings.Split(p[1], ",") {
			if c == "memory" {
				v1 = p[2]
			}
		}
		if p[0] == "0" && p[1] == "" {
			v2 = p[2]
		}
	}
	for _, m := range mounts {
		if m.FSType == "cgroup" && v1 != "" && strings.Contains(","+m.SuperOpts+",", ",memory,") {
			return filepath.Join(m.Point, strings.TrimPrefix(v1, m.Root)), true, nil
		}
	}
	for _, m := range mounts {
		if m.FSType == "cgroup2" && v2 != "" {
			return filepath.Join(m.Point, strings.TrimPrefix(v2, m.Root)), false, nil
		}
	}
	return "", false, fmt.Errorf("no memory cgroup for %d", pid)
}

// cgroupOOMKills is how many processes pid's memory cgroup killed at its
// limit.
func cgroupOOMKills(pid int) int64 {
	dir, v1, err := memCgroupDir(pid)
	if err != nil {
		return 0
	}
	file := "memory.events"
	if v1 {
		file = "memory.oom_control"
	}
	b, _ := os.ReadFile(filepath.Join(dir, file))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "oom_kill" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// oversell plays an oversold host: one cgroup v1 memory group is the
// host's RAM; both bare guests are booted afresh inside it (QEMU joins
// it before it starts), the neighbour now with 512 MiB of RAM (the
// victim has 128), and the group's limit is set to what the two use at
// rest plus 64 MiB: more RAM sold than the host has, as on a host sold
// on its guests' average use (without swap here). undo moves them out
// and removes the group; memory is the last scenario, so the guests
// stay as they are.
func (s *bareSide) oversell() (undo func(), err error) {
	parent, _, err := memCgroupDir(os.Getpid())
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(parent, fmt.Sprintf("rfnb-host-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("making the oversold host's cgroup: %w", err)
	}
	s.hostCg = dir
	rd := func(f string) string { b, _ := os.ReadFile(filepath.Join(dir, f)); return strings.TrimSpace(string(b)) }
	undo = func() {
		fmt.Printf("  (the oversold host: peak %s MiB)\n", mib(rd("memory.max_usage_in_bytes")))
		for _, g := range []*guest{s.victim, s.noisy} {
			if g.alive() {
				os.WriteFile(filepath.Join(parent, "cgroup.procs"), []byte(strconv.Itoa(g.pid)), 0o644)
			}
		}
		s.hostCg = ""
		for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	s.noisy.memMiB = 512
	for _, g := range []*guest{s.victim, s.noisy} {
		syscall.Kill(g.pid, syscall.SIGKILL)
		for i := 0; i < 100 && g.alive(); i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if err := s.restart(g); err != nil {
			undo()
			return nil, err
		}
	}
	use, _ := strconv.ParseInt(rd("memory.usage_in_bytes"), 10, 64)
	limit := strconv.FormatInt(use+64<<20, 10)
	for _, f := range []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(limit), 0o644); err != nil && f == "memory.limit_in_bytes" {
			undo()
			return nil, err
		}
	}
	fmt.Printf("  (oversold host: %s MiB of RAM for guests of 128 and 512 MiB, which use %s MiB at rest)\n", mib(limit), mib(strconv.FormatInt(use, 10)))
	return undo, nil
}

func mib(bytes string) string {
	n, _ := strconv.ParseInt(bytes, 10, 64)
	return strconv.FormatInt(n>>20, 10)
}
