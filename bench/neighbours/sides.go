package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
	"github.com/ringfence/ringfence/internal/engine/qemu/qmp"
	"github.com/ringfence/ringfence/internal/procfs"
)

// figures are one guest's at one moment, as `top` shows them: rates over
// the last interval, counters since it started.
type figures struct {
	stealPct, cpuPct float64
	wrOps, txBytes   int64
	delivered        int64 // of its floods, what reached the peer
}

// snapshot is every guest's figures at one moment.
type snapshot struct {
	t time.Time
	g map[string]figures
}

// sampler streams a side's figures, about one snapshot a second, until
// quit is closed.
type sampler interface {
	stream(quit <-chan struct{}, emit func(snapshot))
}

// rfSide is Ringfence: a daemon of its own in the host's namespace, the
// victim, a neighbour without disk or network limits (noisy) and one
// with them (tamed), each made from a domain file with `ringfence
// create`.
type rfSide struct {
	b                    *bench
	c                    *client.Client
	sock                 string
	victim, noisy, tamed *guest
}

// rfSpec is what differs between the Ringfence guests' domain files.
type rfSpec struct {
	name, ip, mac string
	role          role
	diskOpts      string // appended to the data disk's spec
	vifOpts       string // appended to the vif's spec
}

func (b *bench) startRingfence() error {
	c, stop, err := benchenv.DaemonIn(b.ns, b.bin, filepath.Join(b.dir, "state"), "--vcpu-ratio", "2")
	if err != nil {
		return err
	}
	b.undo.Later(stop)
	r := &rfSide{b: b, c: c, sock: c.Socket}
	b.rf = r
	specs := []rfSpec{
		{name: "victim", ip: "10.77.0.11", mac: "00:16:3e:77:00:11", role: victim, vifOpts: ",rate=" + victimRate},
		{name: "noisy", ip: "10.77.0.12", mac: "00:16:3e:77:00:12", role: neighbour},
		{name: "tamed", ip: "10.77.0.13", mac: "00:16:3e:77:00:13", role: neighbour,
			diskOpts: fmt.Sprintf(",iops=%d", neighbourIOPS), vifOpts: ",rate=" + neighbourRate},
	}
	for _, s := range specs {
		g, err := r.create(s)
		if err != nil {
			return err
		}
		switch s.name {
		case "victim":
			r.victim = g
		case "noisy":
			r.noisy = g
		default:
			r.tamed = g
		}
	}
	return nil
}

// The plans sold on this host. The uplink (50 Mbit/s) holds the victim's
// rate= and the tamed neighbour's together, as a host that does not
// oversell its uplink does; the neighbour's IOPS limit is well under
// what the victim does alone (~1000-1500 random 4k writes a second
// here, CPU-bound under TCG).
const (
	victimRate    = "40Mb/s"
	neighbourIOPS = 100
	neighbourRate = "5Mb/s"
)

// create writes a domain file, creates the domain with the CLI and
// attaches to its console.
func (r *rfSide) create(s rfSpec) (*guest, error) {
	tools, data, err := r.b.disks(s.name)
	if err != nil {
		return nil, err
	}
	img := r.b.s.img
	// no_timer_check (both sides): under TCG on a loaded host the guest
	// kernel's IO-APIC timer check can fail and panic the boot.
	cfg := fmt.Sprintf(`name = "%s"
type = "pv"
kernel = "%s"
ramdisk = "%s"
memory = 128
vcpus = 1
extra = "console=ttyS0 quiet no_timer_check"
disk = [ 'format=raw,vdev=xvda,access=w,target=%s', 'format=raw,vdev=xvdb,access=w%s,target=%s' ]
vif = [ 'bridge=%s,mac=%s,ip=%s%s' ]
`, s.name, img.Kernel, img.Initrd, tools, s.diskOpts, data, bridge, s.mac, s.ip, s.vifOpts)
	file := filepath.Join(r.b.dir, s.name+".cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	if _, err := r.cli("create", file); err != nil {
		return nil, err
	}
	ctx := context.Background()
	r.b.undo.Later(func() { r.c.Action(ctx, s.name, "destroy", nil) })
	d, err := r.c.Get(ctx, s.name)
	if err != nil {
		return nil, err
	}
	conn, err := r.c.Console(ctx, s.name, true)
	if err != nil {
		return nil, err
	}
	r.b.undo.Later(func() { conn.Close() })
	return &guest{name: s.name, side: "ringfence", role: s.role, ip: s.ip, con: benchenv.NewConsole(conn, conn), pid: d.PID, b: r.b}, nil
}

// cli runs the ringfence CLI against the bench's daemon.
func (r *rfSide) cli(args ...string) (string, error) {
	out, err := exec.Command(r.b.bin, append([]string{"--socket", r.sock}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ringfence %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// sched sets a domain's weight and cap and pins its vCPU (cpus: "all" or
// a host CPU), as an admin would with xl's verbs.
func (r *rfSide) sched(g *guest, weight, capPct int, cpus string) error {
	if _, err := r.cli("sched-credit", "-d", g.name, "-w", fmt.Sprint(weight), "-c", fmt.Sprint(capPct)); err != nil {
		return err
	}
	_, err := r.cli("vcpu-pin", g.name, "all", cpus)
	return err
}

func (r *rfSide) pause(g *guest) error  { _, err := r.cli("pause", g.name); return err }
func (r *rfSide) resume(g *guest) error { _, err := r.cli("unpause", g.name); return err }

// stream is `ringfence top --json -d 1`: what an admin (and, as steal,
// the customer) sees, one object a second from one CLI process for the
// whole window (a process started every second would itself take CPU
// from the guests being measured).
func (r *rfSide) stream(quit <-chan struct{}, emit func(snapshot)) {
	cmd := exec.Command(r.b.bin, "--socket", r.sock, "top", "--json", "-d", "1", "-i", "100000")
	out, err := cmd.StdoutPipe()
	if err != nil || cmd.Start() != nil {
		return
	}
	go func() { <-quit; cmd.Process.Kill() }()
	dec := json.NewDecoder(out)
	for {
		var st api.Stats
		if err := dec.Decode(&st); err != nil {
			cmd.Wait()
			return
		}
		s := snapshot{t: st.Time, g: map[string]figures{}}
		for _, d := range st.Domains {
			s.g[d.Name] = figures{stealPct: d.StealPct, cpuPct: d.CPUPct, wrOps: d.VBDWr, txBytes: d.NetTxBytes}
		}
		emit(s)
	}
}

// bareSide is the same guests under plain QEMU: no cgroups, taps on the
// same bridge added by hand, QEMU's monitor for pause and disk counters.
type bareSide struct {
	b             *bench
	victim, noisy *guest
	mon           map[string]*qmp.Monitor
	tap           map[string]string
	prev          map[string][3]int64 // run ns, wait ns, CPU ticks at the last sample
	prevT         time.Time
	hostCg        string // the oversold host's memory cgroup, while one is played
}

func (b *bench) startBare() error {
	s := &bareSide{b: b, mon: map[string]*qmp.Monitor{}, tap: map[string]string{}, prev: map[string][3]int64{}}
	b.bare = s
	var err error
	if s.victim, err = s.start("bvictim", "10.77.0.21", "00:16:3e:77:00:21", victim, 128); err != nil {
		return err
	}
	s.noisy, err = s.start("bnoisy", "10.77.0.22", "00:16:3e:77:00:22", neighbour, 128)
	return err
}

// start boots one bare guest: the same kernel, initrd, disks and NIC
// model as Ringfence's, on a tap on the shared bridge.
func (s *bareSide) start(name, ip, mac string, r role, memMiB int) (*guest, error) {
	tools, data := filepath.Join(s.b.dir, name+"-tools.img"), filepath.Join(s.b.dir, name+"-data.img")
	if _, err := os.Stat(tools); err != nil {
		if tools, data, err = s.b.disks(name); err != nil {
			return nil, err
		}
	}
	tap := "nbt-" + name
	if _, ok := s.tap[name]; !ok {
		for _, c := range [][]string{
			{"ip", "-n", s.b.ns, "tuntap", "add", tap, "mode", "tap", "vnet_hdr"},
			{"ip", "-n", s.b.ns, "link", "set", tap, "master", bridge},
			{"ip", "-n", s.b.ns, "link", "set", tap, "up"},
		} {
			if err := benchenv.Sh(c...); err != nil {
				return nil, err
			}
		}
		s.tap[name] = tap
	}
	img, sock := s.b.s.img, filepath.Join(s.b.dir, name+".qmp")
	os.Remove(sock)
	// debug-threads names the vCPU thread (CPU 0/TCG) for pinning and
	// steal; it changes nothing else.
	argv := []string{"nsenter", "--net=/run/netns/" + s.b.ns, "qemu-system-x86_64", "-name", name + ",debug-threads=on", "-machine", "q35,accel=tcg",
		"-m", fmt.Sprint(memMiB), "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
		"-kernel", img.Kernel, "-initrd", img.Initrd, "-append", "console=ttyS0 quiet no_timer_check",
		"-drive", "if=none,id=tools,format=raw,cache=writeback,aio=threads,file=" + tools, "-device", "virtio-blk-pci,drive=tools",
		"-drive", "if=none,id=data,format=raw,cache=writeback,aio=threads,file=" + data, "-device", "virtio-blk-pci,drive=data",
		"-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no", "-device", "virtio-net-pci,netdev=n0,mac=" + mac,
		"-qmp", "unix:" + sock + ",server=on,wait=off"}
	if s.hostCg != "" {
		// Into the oversold host's RAM before QEMU allocates any.
		argv = append([]string{"sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, s.hostCg}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// nsenter execs QEMU in place: the pid is QEMU's. It is reaped as
	// soon as it ends (a host OOM kill), so alive() sees it gone.
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.b.undo.Later(func() { cmd.Process.Kill(); <-exited })
	g := &guest{name: name, side: "bare", role: r, ip: ip, mac: mac, memMiB: memMiB, con: benchenv.NewConsole(out, in), pid: cmd.Process.Pid, b: s.b}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var err error
	for {
		var m *qmp.Monitor
		if m, err = qmp.Dial(ctx, sock); err == nil {
			s.mon[name] = m
			s.b.undo.Later(func() { m.Close() })
			break
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("bare %s: no monitor: %w", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return g, nil
}

// restart boots a bare guest the host killed again, in place: same
// disks, tap and address (and the small host, if one is played).
func (s *bareSide) restart(g *guest) error {
	if g.side != "bare" {
		return fmt.Errorf("%s died", g)
	}
	ng, err := s.start(g.name, g.ip, g.mac, g.role, g.memMiB)
	if err != nil {
		return err
	}
	if _, err := ng.con.WaitFor("ringfence: guest ready", 0, 3*time.Minute); err != nil {
		return fmt.Errorf("%s did not boot again: %w", g, err)
	}
	if err := ng.prepare(); err != nil {
		return err
	}
	g.con, g.pid = ng.con, ng.pid
	delete(s.prev, g.name)
	s.b.paused[g] = false
	return nil
}

func (s *bareSide) pause(g *guest) error {
	return s.mon[g.name].Execute(context.Background(), "stop", nil, nil)
}

func (s *bareSide) resume(g *guest) error {
	return s.mon[g.name].Execute(context.Background(), "cont", nil, nil)
}

// pin sets the affinity of a bare guest's vCPU thread (cpu < 0: any), as
// a hand-rolled host would with taskset.
func (s *bareSide) pin(g *guest, cpu int) error {
	var set unix.CPUSet
	if cpu < 0 {
		for i := 0; i < hostCPUs(); i++ {
			set.Set(i)
		}
	} else {
		set.Set(cpu)
	}
	tid := g.vcpuThread()
	if tid == 0 {
		return fmt.Errorf("%s: no vCPU thread found", g)
	}
	return unix.SchedSetaffinity(tid, &set)
}

func hostCPUs() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 1
	}
	return set.Count()
}

// stream samples the bare guests every second.
func (s *bareSide) stream(quit <-chan struct{}, emit func(snapshot)) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		emit(s.sample())
		select {
		case <-quit:
			return
		case <-t.C:
		}
	}
}

// sample reads what `top` would show for the bare guests from /proc (the
// vCPU thread's run and wait time, the process's CPU), the tap's
// counters and QEMU's block statistics.
func (s *bareSide) sample() snapshot {
	now := time.Now()
	snap := snapshot{t: now, g: map[string]figures{}}
	dt := now.Sub(s.prevT).Seconds()
	for _, g := range []*guest{s.victim, s.noisy} {
		if !g.alive() {
			continue
		}
		run, wait, err := procfs.SchedStat(g.pid, g.vcpuThread())
		if err != nil {
			continue
		}
		st, _ := procfs.ReadStat(g.pid, 0)
		cur := [3]int64{run, wait, int64(st.UTime + st.STime)}
		f := figures{wrOps: s.writeOps(g), txBytes: s.tapRx(g)}
		if p, ok := s.prev[g.name]; ok && dt > 0 && cur[0] >= p[0] {
			f.stealPct = 100 * float64(cur[1]-p[1]) / 1e9 / dt
			f.cpuPct = 100 * float64(cur[2]-p[2]) / procfs.ClockTicks / dt
		}
		s.prev[g.name] = cur
		snap.g[g.name] = f
	}
	s.prevT = now
	return snap
}

// writeOps is the guest's data disk's write count, from QEMU.
func (s *bareSide) writeOps(g *guest) int64 {
	var stats []struct {
		Device string `json:"device"`
		QDev   string `json:"qdev"`
		Stats  struct {
			WrOps int64 `json:"wr_operations"`
		} `json:"stats"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.mon[g.name].Execute(ctx, "query-blockstats", nil, &stats); err != nil {
		return 0
	}
	for _, b := range stats {
		if b.Device == "data" {
			return b.Stats.WrOps
		}
	}
	return 0
}

// tapRx is what the guest has sent: its tap's received bytes, read
// from /proc/PID/net/dev of its QEMU (which is in the host's namespace).
func (s *bareSide) tapRx(g *guest) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", g.pid))
	for _, l := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && name == s.tap[g.name] {
			var n int64
			fmt.Sscan(rest, &n)
			return n
		}
	}
	return 0
}

// allGuests are every guest of both sides.
func (b *bench) allGuests() []*guest {
	return []*guest{b.rf.victim, b.rf.noisy, b.rf.tamed, b.bare.victim, b.bare.noisy}
}
