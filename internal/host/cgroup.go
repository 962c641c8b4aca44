package host

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ringfence/ringfence/internal/procfs"
)

// Limits are what a domain's cgroup enforces.
type Limits struct {
	MemoryBytes int64 // guest RAM + bounded QEMU overhead; never swapped
	CPUWeight   int   // xl cpu_weight, 1..65535 (256 = default share)
	CapPercent  int   // xl cap: percent of one host CPU, 0 = none
}

// Cgroups places each domain's QEMU in its own cgroup under the daemon's
// own (a delegated subtree, as systemd's Delegate=yes gives), on cgroup v1
// (one hierarchy per controller) or v2 (unified), detected at start.
type Cgroups struct {
	Version int               // 1 or 2
	v1      map[string]string // controller -> base dir (…/<own path>/ringfence)
	v2      string            // base dir on v2
	v2mnt   string            // where cgroup2 is mounted
	// Scope is the systemd scope unit that holds the domains on a systemd
	// host with cgroup v2 ("" elsewhere).
	Scope string
	mu    sync.Mutex // balance's read-sum-write of the subtree's weight
}

const cfsPeriod = 100000 // µs

// DetectCgroups finds the cgroup layout from /proc/self/mountinfo and
// /proc/self/cgroup. v1 is used when its cpu and memory controllers are
// mounted (hybrid hosts like Debian 10's), else v2.
//
// sub names this daemon's subtree ("ringfence" on a normal host; two
// daemons on one host, as in tests, need different ones).
func DetectCgroups(sub string) (*Cgroups, error) {
	c, err := detectCgroups(procfs.SelfMountinfo, procfs.SelfCgroup, sub)
	if err != nil || c.Version != 2 || !SystemdRunning() {
		return c, err
	}
	return systemdScope(c, sub)
}

// SystemdRunning reports whether systemd is the init system
// (sd_booted(3)'s test).
func SystemdRunning() bool {
	fi, err := os.Stat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// HolderVerb is the hidden command of the process that keeps the domains'
// systemd scope alive; the binary's main runs Hold for it.
const HolderVerb = "__cgroup-holder"

// Hold is the scope holder's whole life: it sleeps until systemd stops
// the scope (at host shutdown, after the guests were shut down).
func Hold() int {
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	select {}
}

// systemdScope moves the domains' subtree out of the daemon's own cgroup
// into a transient scope, machine.slice/<sub>-guests.scope (Delegate=yes),
// as libvirt puts its machines in machine.slice. Under the service itself
// they would break `systemctl restart ringfence`: systemd (before 254's
// DelegateSubgroup=) cannot put the new daemon into a cgroup whose
// subtree_control is set while guests live below it (EBUSY, status
// 219/CGROUP; systemd#24064). A scope is its own unit: it outlives the
// daemon, and ringfence-guests.service is ordered to stop before it.
func systemdScope(c *Cgroups, sub string) (*Cgroups, error) {
	unit := sub + "-guests.scope"
	dir := filepath.Join(c.v2mnt, "machine.slice", unit)
	out := &Cgroups{Version: 2, v2: dir, v2mnt: c.v2mnt, Scope: unit}
	holders := filepath.Join(dir, "holder")
	if procs, err := os.ReadFile(filepath.Join(holders, "cgroup.procs")); err == nil && len(strings.TrimSpace(string(procs))) > 0 {
		return out, nil // a previous daemon made it; its holder lives
	}
	if _, err := os.Stat(dir); err != nil {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		// systemd-run --scope registers its own pid as the scope and then
		// executes the holder in place.
		cmd := exec.Command("systemd-run", "--scope", "--quiet", "--unit", unit, "--slice", "machine.slice",
			"--description", "Ringfence guests", "-p", "Delegate=yes", self, HolderVerb)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("creating the guests' systemd scope %s: %w", unit, err)
		}
		go cmd.Wait() // reaped if it ever ends while we run
		pid := cmd.Process.Pid
		deadline := time.Now().Add(10 * time.Second)
		for !cgroupHas(dir, pid) {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				return nil, fmt.Errorf("systemd did not create the scope %s in 10s (systemctl status %s)", unit, unit)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// v2's "no internal processes": the holder goes into a leaf so the
	// scope can hand its controllers down to the domains.
	if err := os.MkdirAll(holders, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", holders, err)
	}
	procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	for _, p := range strings.Fields(string(procs)) {
		if err := write(holders, "cgroup.procs", p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// cgroupHas reports whether pid is in the cgroup dir.
func cgroupHas(dir string, pid int) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return false
	}
	return slices.Contains(strings.Fields(string(b)), strconv.Itoa(pid))
}

func detectCgroups(mountinfo, selfCgroup, sub string) (*Cgroups, error) {
	own := map[string]string{} // controller (or "" for v2) -> own path
	f, err := os.Open(selfCgroup)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			own[""] = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			own[c] = parts[2]
		}
	}
	f.Close()
	mounts, err := procfs.Mountinfo(mountinfo)
	if err != nil {
		return nil, err
	}
	v1 := map[string]string{}
	v2, v2mnt := "", ""
	for _, m := range mounts {
		// The mount's root within the hierarchy: inside a container the
		// own path is relative to it.
		switch m.FSType {
		case "cgroup":
			for _, opt := range strings.Split(m.SuperOpts, ",") {
				if opt == "cpu" || opt == "memory" || opt == "cpuacct" {
					v1[opt] = filepath.Join(m.Point, strings.TrimPrefix(own[opt], m.Root), sub)
				}
			}
		case "cgroup2":
			v2, v2mnt = filepath.Join(m.Point, strings.TrimPrefix(own[""], m.Root), sub), m.Point
		}
	}
	if v1["cpu"] != "" && v1["memory"] != "" {
		return &Cgroups{Version: 1, v1: v1}, nil
	}
	if v2 != "" {
		return &Cgroups{Version: 2, v2: v2, v2mnt: v2mnt}, nil
	}
	return nil, errors.New("no usable cgroup hierarchy (need v1 cpu+memory controllers or cgroup2) mounted")
}

// newCgroupsV1/V2 build managers over arbitrary roots, for tests.
func newCgroupsV1(cpu, memory string) *Cgroups {
	return &Cgroups{Version: 1, v1: map[string]string{"cpu": cpu, "memory": memory}}
}

func newCgroupsV2(base string) *Cgroups { return &Cgroups{Version: 2, v2: base} }

// Dirs are the domain's cgroup directories (on v1: cpu, memory, then
// cpuacct where it is mounted apart from cpu, for the CPU time usage
// accounting bills).
func (c *Cgroups) Dirs(name string) []string {
	if c.Version == 1 {
		dirs := []string{filepath.Join(c.v1["cpu"], name), filepath.Join(c.v1["memory"], name)}
		if acct := c.v1["cpuacct"]; acct != "" && acct != c.v1["cpu"] {
			dirs = append(dirs, filepath.Join(acct, name))
		}
		return dirs
	}
	return []string{filepath.Join(c.v2, name)}
}

// CPUTime is the CPU time (ns) the domain's cgroup has used since it was
// made: every thread of its QEMU, the vCPUs and the device emulation
// alike. -1 when it cannot be read (no cgroup, no cpuacct on v1).
func (c *Cgroups) CPUTime(name string) int64 {
	if c.Version == 1 {
		acct := c.v1["cpuacct"]
		if acct == "" {
			return -1
		}
		b, err := procfs.ReadCounter(filepath.Join(acct, name, "cpuacct.usage"))
		if err != nil {
			return -1
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	b, err := procfs.ReadCounter(filepath.Join(c.v2, name, "cpu.stat"))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == "usage_usec" {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return -1
			}
			return n * 1000
		}
	}
	return -1
}

// ProcsFiles are the files a process writes its pid to to join.
func (c *Cgroups) ProcsFiles(name string) []string {
	var out []string
	for _, d := range c.Dirs(name) {
		out = append(out, filepath.Join(d, "cgroup.procs"))
	}
	return out
}

// CPUShares maps an xl weight to v1 cpu.shares (256 -> 1024).
func CPUShares(weight int) int {
	s := weight * 1024 / 256
	if s < 2 {
		s = 2
	}
	return s
}

// CPUWeightV2 maps an xl weight to v2 cpu.weight (256 -> 100).
func CPUWeightV2(weight int) int {
	w := weight * 100 / 256
	if w < 1 {
		w = 1
	}
	if w > 10000 {
		w = 10000
	}
	return w
}

func write(dir, file, val string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(val), 0o644); err != nil {
		return fmt.Errorf("cgroup %s/%s = %s: %w", dir, file, val, err)
	}
	return nil
}

// Create makes the domain's cgroups and sets the limits; the QEMU then
// joins them before it executes (see internal/launch).
func (c *Cgroups) Create(name string, l Limits) error {
	if c.Version == 2 {
		if err := c.enableV2(); err != nil {
			return err
		}
	}
	for _, d := range c.Dirs(name) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating cgroup %s: %w", d, err)
		}
	}
	if err := c.Update(name, l); err != nil {
		c.Remove(name)
		return err
	}
	return nil
}

// enableV2 turns on the cpu and memory controllers down to our subtree.
func (c *Cgroups) enableV2() error {
	if err := os.MkdirAll(c.v2, 0o755); err != nil {
		return fmt.Errorf("creating cgroup %s: %w", c.v2, err)
	}
	if c.Scope != "" {
		// systemd delegated the scope with its controllers.
		return write(c.v2, "cgroup.subtree_control", "+cpu +memory")
	}
	parent := filepath.Dir(c.v2)
	if err := write(parent, "cgroup.subtree_control", "+cpu +memory"); err != nil {
		// v2's "no internal processes" rule: move the daemon into a leaf
		// of its own cgroup, then delegate.
		leaf := filepath.Join(parent, "supervisor")
		os.MkdirAll(leaf, 0o755)
		if werr := write(leaf, "cgroup.procs", strconv.Itoa(os.Getpid())); werr != nil {
			return err
		}
		if err := write(parent, "cgroup.subtree_control", "+cpu +memory"); err != nil {
			return err
		}
	}
	return write(c.v2, "cgroup.subtree_control", "+cpu +memory")
}

// Update changes the limits of a running domain.
func (c *Cgroups) Update(name string, l Limits) error {
	weight := l.CPUWeight
	if weight == 0 {
		weight = 256
	}
	if c.Version == 1 {
		cpu, mem := c.Dirs(name)[0], c.Dirs(name)[1]
		quota := "-1"
		if l.CapPercent > 0 {
			quota = strconv.Itoa(l.CapPercent * cfsPeriod / 100)
		}
		steps := [][3]string{
			{cpu, "cpu.shares", strconv.Itoa(CPUShares(weight))},
			{cpu, "cpu.cfs_period_us", strconv.Itoa(cfsPeriod)},
			{cpu, "cpu.cfs_quota_us", quota},
			{mem, "memory.swappiness", "0"},
		}
		if l.MemoryBytes > 0 {
			// memsw (RAM+swap) must stay >= the RAM limit: order matters.
			cur, _ := os.ReadFile(filepath.Join(mem, "memory.limit_in_bytes"))
			curN, _ := strconv.ParseInt(strings.TrimSpace(string(cur)), 10, 64)
			memSteps := [][3]string{{mem, "memory.limit_in_bytes", fmt.Sprint(l.MemoryBytes)}, {mem, "memory.memsw.limit_in_bytes", fmt.Sprint(l.MemoryBytes)}}
			if curN > 0 && l.MemoryBytes > curN {
				memSteps[0], memSteps[1] = memSteps[1], memSteps[0]
			}
			steps = append(steps, memSteps...)
		}
		for _, s := range steps {
			if _, err := os.Stat(filepath.Join(s[0], s[1])); os.IsNotExist(err) && s[1] == "memory.memsw.limit_in_bytes" {
				continue // kernel without swap accounting: swappiness=0 still applies
			}
			if err := write(s[0], s[1], s[2]); err != nil {
				return err
			}
		}
		return c.balance()
	}
	dir := c.Dirs(name)[0]
	max := "max"
	if l.CapPercent > 0 {
		max = strconv.Itoa(l.CapPercent * cfsPeriod / 100)
	}
	steps := [][2]string{
		{"cpu.weight", strconv.Itoa(CPUWeightV2(weight))},
		{"cpu.max", fmt.Sprintf("%s %d", max, cfsPeriod)},
	}
	if l.MemoryBytes > 0 {
		steps = append(steps, [2]string{"memory.max", fmt.Sprint(l.MemoryBytes)}, [2]string{"memory.swap.max", "0"})
	}
	for _, s := range steps {
		if err := write(dir, s[0], s[1]); err != nil {
			return err
		}
	}
	return c.balance()
}

// balance gives the domains' subtree the sum of its domains' CPU weights
// (never less than one ordinary task's), so that each domain competes
// with the host's own processes as one task of its weight would, as a
// Xen guest competes with dom0, instead of all domains together as one:
// with the default, a busy process on the host took as much CPU as
// every guest together, and a second busy guest halved the first one's
// share of a busy host (measured: bench/neighbours). Under systemd's
// scope the siblings are other machines and machine.slice's CPUWeight=
// is the admin's: left alone.
func (c *Cgroups) balance() error {
	if c.Scope != "" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	base, file, floor, ceil := c.v2, "cpu.weight", 100, 10000
	if c.Version == 1 {
		base, file, floor, ceil = c.v1["cpu"], "cpu.shares", 1024, 262144
	}
	ents, err := os.ReadDir(base)
	if err != nil {
		return fmt.Errorf("reading cgroup %s: %w", base, err)
	}
	total := 0
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(base, e.Name(), file))
		if err != nil {
			continue // not a domain's (v2: the supervisor's leaf has no cpu files until enabled)
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		total += n
	}
	return write(base, file, strconv.Itoa(min(max(total, floor), ceil)))
}

// HostThread charges one thread of a domain's QEMU to the host instead of
// the domain (v1 cpu controller only: v2 cannot split a process). Used
// for the migration thread: encrypting and sending the stream is the
// host's work, as in Xen, where dom0 does it; left in the domain's group
// it competes with the guest's own vCPUs for the domain's share.
func (c *Cgroups) HostThread(tid int) error {
	if c.Version != 1 {
		return nil
	}
	if acct := c.v1["cpuacct"]; acct != "" && acct != c.v1["cpu"] {
		write(acct, "tasks", strconv.Itoa(tid))
	}
	return write(c.v1["cpu"], "tasks", strconv.Itoa(tid))
}

// Deprioritize gives the domain the smallest CPU share: a stopped copy
// about to be torn down (after migrating away) must not take CPU from the
// guests that run, the migrated one included.
func (c *Cgroups) Deprioritize(name string) error {
	file, val := "cpu.weight", "1"
	if c.Version == 1 {
		file, val = "cpu.shares", "2"
	}
	if err := write(c.Dirs(name)[0], file, val); err != nil {
		return err
	}
	return c.balance()
}

// Remove deletes the domain's cgroups. A process SIGKILLed a moment ago
// may still be exiting (freeing its memory) and the kernel refuses to
// remove a cgroup that holds one, so Remove waits for it (up to 10 s)
// instead of leaving the cgroup behind for good.
func (c *Cgroups) Remove(name string) error {
	deadline := time.Now().Add(10 * time.Second)
	for _, d := range c.Dirs(name) {
		for {
			err := os.Remove(d)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				return fmt.Errorf("removing cgroup %s: %w", d, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The domain is gone whatever the subtree's weight; a failure to
	// lower it is corrected by the next domain's change.
	c.balance()
	return nil
}

// Base is where the domains' cgroups are (the memory controller's on v1).
func (c *Cgroups) Base() string {
	if c.Version == 1 {
		return c.v1["memory"]
	}
	return c.v2
}

// Usage reads the cgroup's current memory use in bytes.
func (c *Cgroups) Usage(name string) int64 {
	file := "memory.current"
	dir := c.Dirs(name)[0]
	if c.Version == 1 {
		file, dir = "memory.usage_in_bytes", c.Dirs(name)[1]
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// RemoveBase removes this daemon's subtree if it is empty (no domains
// left), so stopped test daemons leave nothing behind.
func (c *Cgroups) RemoveBase() {
	if c.Version == 1 {
		for _, d := range c.v1 {
			os.Remove(d)
		}
		return
	}
	os.Remove(c.v2)
}

// MemEvents are a domain cgroup's memory facts at the end of a run.
type MemEvents struct {
	OOMKills  int64 // processes the kernel killed at the limit
	LimitB    int64
	PeakB     int64 // highest use (0 when the kernel does not keep it)
	FailCount int64 // times the limit was hit (v1 failcnt, v2 "max")
}

// MemoryEvents reads them (before Remove: they go with the cgroup).
func (c *Cgroups) MemoryEvents(name string) MemEvents {
	var ev MemEvents
	num := func(dir, file string) int64 {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return 0
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	keyed := func(dir, file, key string) int64 {
		b, _ := os.ReadFile(filepath.Join(dir, file))
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, " "); ok && k == key {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				return n
			}
		}
		return 0
	}
	if c.Version == 1 {
		dir := c.Dirs(name)[1]
		ev.OOMKills = keyed(dir, "memory.oom_control", "oom_kill")
		ev.LimitB = num(dir, "memory.limit_in_bytes")
		ev.PeakB = num(dir, "memory.max_usage_in_bytes")
		ev.FailCount = num(dir, "memory.failcnt")
		return ev
	}
	dir := c.Dirs(name)[0]
	ev.OOMKills = keyed(dir, "memory.events", "oom_kill")
	ev.FailCount = keyed(dir, "memory.events", "max")
	ev.LimitB = num(dir, "memory.max")
	ev.PeakB = num(dir, "memory.peak")
	return ev
}

// Rename moves a domain's cgroups to its new name; its processes stay in
// them (rename(2) within one hierarchy keeps membership and limits). A
// domain with no cgroups (stopped) has nothing to move.
func (c *Cgroups) Rename(from, to string) error {
	old, dirs := c.Dirs(from), c.Dirs(to)
	for i := range old {
		if err := os.Rename(old[i], dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			for j := 0; j < i; j++ {
				os.Rename(dirs[j], old[j])
			}
			return fmt.Errorf("renaming cgroup %s: %w", old[i], err)
		}
	}
	return nil
}
