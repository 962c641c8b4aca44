package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
)

// The network both sides' guests share: one bridge in the host's
// namespace, and the peer behind a veth pair on it (the host's uplink).
const (
	bridge   = "nbbr0"
	peerIP   = "10.77.0.1"
	peerTCP  = "10.77.0.1:5001" // the victim's: counted and answered
	floodTCP = "10.77.0.1:5002" // the neighbour's: discarded
	echoUDP  = "10.77.0.1:5003"
	floodUDP = "10.77.0.1:5004"
)

// workdir makes the scratch dir, builds ringfence and the guest probe
// into it, and makes the tools disk the guests mount on /mnt.
func (b *bench) workdir() error {
	dir, bin, cleanup, err := benchenv.Workdir("/tmp", "rfnb")
	if err != nil {
		return err
	}
	b.undo.Later(cleanup)
	b.dir, b.bin = dir, bin
	tools := filepath.Join(dir, "tools")
	os.MkdirAll(tools, 0o755)
	b.probe = filepath.Join(tools, "probe")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", b.probe, "./bench/neighbours/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Dir = moduleRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the guest probe: %v\n%s", err, out)
	}
	return benchenv.Sh("mkfs.ext4", "-q", "-F", "-L", "rfprobe", "-d", tools, filepath.Join(dir, "tools.img"), "16M")
}

func moduleRoot() string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "."
	}
	return strings.TrimSpace(string(out))
}

// disks makes a guest's own copy of the tools disk (vda, mounted on /mnt
// by the image's init) and its 64 MiB data disk (vdb, the disk
// scenario's target).
func (b *bench) disks(name string) (tools, data string, err error) {
	tools, data = filepath.Join(b.dir, name+"-tools.img"), filepath.Join(b.dir, name+"-data.img")
	if err := benchenv.Sh("cp", filepath.Join(b.dir, "tools.img"), tools); err != nil {
		return "", "", err
	}
	// Written out, not sparse: the first round must not pay for the
	// host's filesystem allocating blocks.
	return tools, data, benchenv.Sh("dd", "if=/dev/zero", "of="+data, "bs=1M", "count=64", "status=none")
}

// network makes the host's namespace (the daemon, the bare taps and the
// bridge live there) and the peer's, joined by a veth pair whose host
// end is on the bridge and shaped to the uplink's rate, and starts the
// peer's servers.
func (b *bench) network() error {
	b.ns, b.peer = fmt.Sprintf("rfnb%d", os.Getpid()), fmt.Sprintf("rfnp%d", os.Getpid())
	for _, n := range []string{b.ns, b.peer} {
		if err := benchenv.Sh("ip", "netns", "add", n); err != nil {
			return err
		}
		del := exec.Command("ip", "netns", "del", n)
		b.undo.Later(func() { del.Run() })
		benchenv.Sh("ip", "-n", n, "link", "set", "lo", "up")
	}
	cmds := [][]string{
		{"ip", "-n", b.ns, "link", "add", bridge, "type", "bridge"},
		{"ip", "-n", b.ns, "link", "set", bridge, "up"},
		{"ip", "-n", b.ns, "link", "add", "nbup0", "type", "veth", "peer", "name", "nbup1", "netns", b.peer},
		{"ip", "-n", b.ns, "link", "set", "nbup0", "master", bridge},
		{"ip", "-n", b.ns, "link", "set", "nbup0", "up"},
		{"ip", "-n", b.peer, "addr", "add", peerIP + "/24", "dev", "nbup1"},
		{"ip", "-n", b.peer, "link", "set", "nbup1", "up"},
	}
	if b.s.uplinkMbit > 0 {
		// The uplink every guest shares: a token bucket towards the peer
		// (tbf, not netem: this kernel has no netem).
		cmds = append(cmds, []string{"tc", "-n", b.ns, "qdisc", "add", "dev", "nbup0", "root", "tbf",
			"rate", fmt.Sprintf("%dmbit", b.s.uplinkMbit), "burst", "32kb", "latency", "20ms"})
	}
	for _, c := range cmds {
		if err := benchenv.Sh(c...); err != nil {
			return err
		}
	}
	return b.startPeer()
}

// startPeer runs this program's peer mode in the peer namespace, on the
// last CPU (the neighbour's in the rows that pin them apart) and ahead of
// the guests there (nice -10): the peer stands for another machine, with
// CPU of its own. Left to roam, it took 4 points of the victim's CPU while
// the neighbour flooded it (6.7% of CPU 0 with the flood, 2.8% without),
// which top showed as the victim's steal; beside a bare neighbour without
// priority, it starved and the victim's probe timed out.
func (b *bench) startPeer() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	last := fmt.Sprint(hostCPUs() - 1)
	cmd := exec.Command("taskset", "-c", last, "nice", "-n", "-10", "ip", "netns", "exec", b.peer, self, "peer")
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	b.undo.Later(func() { cmd.Process.Kill(); cmd.Wait() })
	b.peerOut = benchenv.NewConsole(out, nil)
	if _, err := b.peerOut.WaitFor("peer ready", 0, 20*time.Second); err != nil {
		return fmt.Errorf("the peer: %w", err)
	}
	return nil
}

// delivered is how many bytes of the floods from ip reached the peer, as
// it last said.
func (b *bench) delivered(ip string) int64 {
	s := b.peerOut.Output()
	s = s[:strings.LastIndexByte(s, '\n')+1] // complete lines only
	i := strings.LastIndex(s, "counts {")
	if i < 0 {
		return 0
	}
	line := s[i+len("counts "):]
	line = line[:strings.IndexByte(line, '\n')]
	var got map[string]int64
	json.Unmarshal([]byte(line), &got)
	return got[ip]
}

// prepareGuests waits for every guest to boot, gives it its address
// and, on the victims, the resident working set the memory scenario
// walks; the guests not measured first are paused.
func (b *bench) prepareGuests() error {
	for _, g := range b.allGuests() {
		if _, err := g.con.WaitFor("ringfence: guest ready", 0, 3*time.Minute); err != nil {
			return fmt.Errorf("%s did not boot: %w", g, err)
		}
		if err := g.prepare(); err != nil {
			return err
		}
	}
	return nil
}

// prepare gives a booted guest its address (and a victim its working
// set).
func (g *guest) prepare() error {
	if err := g.settle(); err != nil {
		return err
	}
	// The probe runs from a copy in RAM: run from the disk, the hog's
	// own code pages were the last thing the guest could reclaim, and it
	// thrashed re-reading them for minutes instead of going OOM.
	line := fmt.Sprintf("cp /mnt/probe /tmp/probe; killall udhcpc 2>/dev/null; ip addr flush dev eth0; ip addr add %s/24 dev eth0", g.ip)
	if g.role == victim {
		line += "; dd if=/dev/zero of=/tmp/ws bs=1M count=32 2>/dev/null"
	}
	return g.sh(line, 2*time.Minute)
}

// settle waits until the guest's shell takes whole lines: a shell still
// starting can eat the first characters of one (busybox ash reads its
// cursor-position answer from the same input).
func (g *guest) settle() error {
	deadline := time.Now().Add(time.Minute)
	for {
		off := g.con.Len()
		fmt.Fprintf(g.con.W, "echo up-$((20+22))\n")
		if _, err := g.con.WaitFor("up-42", off, 5*time.Second); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: its shell does not answer", g)
		}
	}
}

// header says what this run is and on what.
func (b *bench) header() {
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("neighbours: %d rounds per variant (alone / with, alternating), %s phases; load average %s",
		b.s.rounds, b.s.phase, load)
	fmt.Printf("victim and neighbours: 1 vCPU, 128 MiB, TCG; uplink to the peer %s\n\n", uplinkText(b.s.uplinkMbit))
}

func uplinkText(mbit int) string {
	if mbit == 0 {
		return "unshaped"
	}
	return fmt.Sprintf("%d Mbit/s (tbf)", mbit)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
