// Command net measures TCP throughput through Ringfence's networking
// against plain Linux plumbing, in one run, alternating sides:
//
//   - guest -> guest: two ringfence guests on a NAT network (bridge made by
//     the daemon, both taps under the anti-spoofing filter) versus two bare
//     QEMU guests on taps on a plain bridge;
//   - guest -> uplink: a ringfence guest out through the same network
//     (filter, forwarding, masquerade) to a namespace behind a veth pair,
//     versus a bare QEMU guest routed through the plain bridge to the same
//     namespace (forwarding only);
//   - the veth pair itself, namespace to namespace, with no guest at all:
//     the host path's ceiling.
//
// Each transfer is `dd if=/dev/zero bs=64k count=N | nc IP PORT` from the
// sending guest into `nc -l` on the receiver, timed from the command to its
// completion marker on the sender's console. Under TCG the guests' CPU is
// the bottleneck, so the ratio ours/plain is what matters.
//
// Everything happens in two network namespaces this program creates and
// removes. Run as root: go run ./bench/net [-mib 64] [-runs 3]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/image"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "sink" {
		sink(os.Args[2])
		return
	}
	ggMiB := flag.Int("gg-mib", 32, "MiB per guest-to-guest transfer")
	upMiB := flag.Int("up-mib", 256, "MiB per guest-to-uplink transfer")
	runs := flag.Int("runs", 3, "transfers per case and side")
	imgDir := flag.String("image", "/var/lib/ringfence/images/default", "default image dir")
	flag.Parse()
	if err := run(*ggMiB, *upMiB, *runs, image.PathsIn(*imgDir)); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var seq int

// transfer sends mib MiB from one guest to ip:port where a receiver is
// already listening, and returns the elapsed time.
func transfer(from *benchenv.Console, ip string, port, mib int) (time.Duration, error) {
	seq++
	t0 := time.Now()
	// The marker is an arithmetic expansion, so it appears in the output
	// only, not in the echoed command line.
	err := from.Do(fmt.Sprintf("dd if=/dev/zero bs=64k count=%d 2>/dev/null | nc %s %d; echo xfer-%d-$((6*7))", mib*16, ip, port, seq),
		fmt.Sprintf("xfer-%d-42", seq), 5*time.Minute)
	return time.Since(t0), err
}

// sink is the uplink's receiver (this program re-run inside the uplink
// namespace): one connection, timed from its first byte to EOF.
func sink(port string) {
	ln, err := net.Listen("tcp4", ":"+port)
	if err != nil {
		fmt.Println(`{"error":"listen"}`)
		return
	}
	fmt.Println("ready")
	c, err := ln.Accept()
	if err != nil {
		return
	}
	n, secs := benchenv.Count(c)
	b, _ := json.Marshal(map[string]any{"bytes": n, "seconds": secs})
	fmt.Println(string(b))
}

// uplinkSink starts a sink in netns; wait returns what it received.
func uplinkSink(netns string, port int) (wait func() (int64, time.Duration, error), err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", "netns", "exec", netns, self, "sink", fmt.Sprint(port))
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := benchenv.NewConsole(out, io.Discard)
	if _, err := c.WaitFor("ready", 0, 10*time.Second); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	return func() (int64, time.Duration, error) {
		cmd.Wait()
		s := c.Output()
		var r struct {
			Bytes   int64   `json:"bytes"`
			Seconds float64 `json:"seconds"`
		}
		if i := strings.Index(s, "{"); i < 0 || json.Unmarshal([]byte(s[i:]), &r) != nil {
			return 0, 0, fmt.Errorf("sink said %q", s)
		}
		return r.Bytes, time.Duration(r.Seconds * float64(time.Second)), nil
	}, nil
}

// viaUplink sends mib MiB with send and returns the sink's timing, after
// checking every byte arrived.
func viaUplink(netns string, mib int, send func() error) (time.Duration, error) {
	wait, err := uplinkSink(netns, 5002)
	if err != nil {
		return 0, err
	}
	serr := send()
	n, d, err := wait()
	if serr != nil {
		return 0, serr
	}
	if err != nil {
		return 0, err
	}
	if n != int64(mib)<<20 {
		return 0, fmt.Errorf("the uplink received %d bytes, want %d", n, int64(mib)<<20)
	}
	return d, nil
}

// netBench is one run of the benchmark: its namespaces, the ringfence and
// bare guests' consoles, and what to take down at the end.
type netBench struct {
	ggMiB, upMiB, runs int
	img                image.Paths
	dir, bin           string
	ns, up             string // the host's namespace and the uplink's
	undo               benchenv.Undo
	rf, bare           map[string]*benchenv.Console
}

// sample are one case's transfers, in Mbit/s.
type sample struct{ ours, plain []float64 }

func run(ggMiB, upMiB, runs int, img image.Paths) error {
	if !img.Built() {
		return fmt.Errorf("no default image: run `make image`")
	}
	b := &netBench{ggMiB: ggMiB, upMiB: upMiB, runs: runs, img: img}
	defer b.undo.Run()
	for _, step := range []func() error{b.workdir, b.namespaces, b.startOurs, b.startBare} {
		if err := step(); err != nil {
			return err
		}
	}
	b.startReceivers()
	res := map[string]*sample{"guest-guest": {}, "guest-uplink": {}, "veth": {}}
	for r := 0; r < runs; r++ {
		if err := b.measure(r, res); err != nil {
			return err
		}
	}
	return b.report(res)
}

// workdir makes the scratch dir and builds ringfence into it.
func (b *netBench) workdir() error {
	dir, bin, cleanup, err := benchenv.Workdir("/tmp", "rfbnet")
	if err != nil {
		return err
	}
	b.undo.Later(cleanup)
	b.dir, b.bin = dir, bin
	b.ns, b.up = fmt.Sprintf("rfbn%d", os.Getpid()), fmt.Sprintf("rfbu%d", os.Getpid())
	return nil
}

// namespaces makes the host's and the uplink's namespaces, the veth pair
// between them and the plain bridge.
func (b *netBench) namespaces() error {
	ns, up := b.ns, b.up
	for _, n := range []string{ns, up} {
		if err := benchenv.Sh("ip", "netns", "add", n); err != nil {
			return err
		}
		del := exec.Command("ip", "netns", "del", n)
		b.undo.Later(func() { del.Run() })
		benchenv.Sh("ip", "-n", n, "link", "set", "lo", "up")
	}
	for _, c := range [][]string{
		{"ip", "-n", ns, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0p", "netns", up},
		{"ip", "-n", ns, "addr", "add", "192.0.2.2/24", "dev", "wan0"},
		{"ip", "-n", ns, "link", "set", "wan0", "up"},
		{"ip", "-n", up, "addr", "add", "192.0.2.1/24", "dev", "wan0p"},
		{"ip", "-n", up, "link", "set", "wan0p", "up"},
		// The plain side is routed, not masqueraded: the uplink knows the way back.
		{"ip", "-n", up, "route", "add", "10.91.0.0/24", "via", "192.0.2.2"},
		{"ip", "-n", ns, "link", "add", "plainbr", "type", "bridge"},
		{"ip", "-n", ns, "addr", "add", "10.91.0.1/24", "dev", "plainbr"},
		{"ip", "-n", ns, "link", "set", "plainbr", "up"},
		{"ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	} {
		if err := benchenv.Sh(c...); err != nil {
			return err
		}
	}
	return nil
}

// startOurs starts Ringfence: a daemon in ns, a NAT network, two guests.
func (b *netBench) startOurs() error {
	c, stop, err := benchenv.DaemonIn(b.ns, b.bin, filepath.Join(b.dir, "state"), "--vcpu-ratio", "4")
	if err != nil {
		return err
	}
	b.undo.Later(stop)
	ctx := context.Background()
	if _, err := c.CreateNetwork(ctx, api.Network{Name: "bn", NAT: true, Subnet: "10.90.0.0/24"}); err != nil {
		return err
	}
	b.undo.Later(func() { c.DeleteNetwork(ctx, "bn") })
	b.rf = map[string]*benchenv.Console{}
	for i, name := range []string{"rfa", "rfb"} {
		spec := api.DomainSpec{Name: name, Kernel: b.img.Kernel, Ramdisk: b.img.Initrd, Cmdline: "console=ttyS0 quiet",
			MemoryMiB: 256, MaxMemMiB: 256, VCPUs: 1, MaxVCPUs: 1,
			Vifs: []api.Vif{{Bridge: "bn", MAC: fmt.Sprintf("00:16:3e:90:00:%02x", i+2), IP: []string{fmt.Sprintf("10.90.0.%d", i+2)}}}}
		if _, err := c.Create(ctx, api.CreateRequest{Spec: spec}); err != nil {
			return fmt.Errorf("creating %s: %w", name, err)
		}
		b.undo.Later(func() { c.Action(ctx, name, "destroy", nil) })
		conn, err := c.Console(ctx, name, true)
		if err != nil {
			return err
		}
		b.undo.Later(func() { conn.Close() })
		b.rf[name] = benchenv.NewConsole(conn, conn)
	}
	for i, name := range []string{"rfa", "rfb"} {
		if _, err := b.rf[name].WaitFor(fmt.Sprintf("eth0 has 10.90.0.%d", i+2), 0, 2*time.Minute); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// startBare starts bare QEMU: the same guests on taps on the plain bridge,
// addressed by hand.
func (b *netBench) startBare() error {
	b.bare = map[string]*benchenv.Console{}
	for i, name := range []string{"pa", "pb"} {
		g, err := b.bareGuest(i)
		if err != nil {
			return err
		}
		b.bare[name] = g
	}
	for i, name := range []string{"pa", "pb"} {
		g := b.bare[name]
		if _, err := g.WaitFor(image.ReadyLine, 0, 2*time.Minute); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		ip := fmt.Sprintf("10.91.0.%d", i+2)
		if err := g.Do(fmt.Sprintf("killall udhcpc; ip addr add %s/24 dev eth0; ip route add default via 10.91.0.1; echo ip-$((1+1))-set", ip), "ip-2-set", 30*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// bareGuest starts bare guest i on a tap of its own on the plain bridge.
func (b *netBench) bareGuest(i int) (*benchenv.Console, error) {
	tap := fmt.Sprintf("ptap%d", i)
	for _, c := range [][]string{
		{"ip", "-n", b.ns, "tuntap", "add", tap, "mode", "tap", "vnet_hdr"},
		{"ip", "-n", b.ns, "link", "set", tap, "master", "plainbr"},
		{"ip", "-n", b.ns, "link", "set", tap, "up"},
	} {
		if err := benchenv.Sh(c...); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command("nsenter", "--net=/run/netns/"+b.ns, "qemu-system-x86_64", "-machine", "q35,accel=tcg", "-m", "256", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
		"-kernel", b.img.Kernel, "-initrd", b.img.Initrd, "-append", "console=ttyS0 quiet",
		"-netdev", "tap,id=n0,ifname="+tap+",script=no,downscript=no",
		"-device", fmt.Sprintf("virtio-net-pci,netdev=n0,mac=00:16:3e:91:00:%02x", i+2))
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b.undo.Later(func() { cmd.Process.Kill(); cmd.Wait() })
	return benchenv.NewConsole(out, in), nil
}

// startReceivers: guests listen in a loop; the uplink namespace runs one
// nc per transfer.
func (b *netBench) startReceivers() {
	// Receiving guests print the byte count of every transfer.
	for _, g := range []*benchenv.Console{b.rf["rfb"], b.bare["pb"]} {
		// stdin is a FIFO opened read-write: it never ends, so nc does not
		// half-close (which ends the sender's nc early) and nothing else
		// in the pipeline outlives the transfer.
		fmt.Fprintf(g.W, "mkfifo /tmp/hold; while true; do echo got-$(nc -l -p 5001 <>/tmp/hold | wc -c)-bytes; done &\n")
	}
	time.Sleep(time.Second)
}

// guestToGuest sends ggMiB from one guest to the receiver at ip and checks
// every byte arrived.
func (b *netBench) guestToGuest(from, to *benchenv.Console, ip string) (time.Duration, error) {
	off := to.Len()
	d, err := transfer(from, ip, 5001, b.ggMiB)
	if err != nil {
		return 0, err
	}
	want := fmt.Sprintf("got-%d-bytes", b.ggMiB<<20)
	if _, err := to.WaitFor(want, off, 30*time.Second); err != nil {
		return 0, fmt.Errorf("receiver at %s: %w", ip, err)
	}
	return d, nil
}

func mbit(mib int, d time.Duration) float64 { return float64(mib) * 8 * 1.048576 / d.Seconds() }

// measure is run r: each case on each side, alternating, into res.
func (b *netBench) measure(r int, res map[string]*sample) error {
	rf, bare, upMiB := b.rf, b.bare, b.upMiB
	d, err := b.guestToGuest(rf["rfa"], rf["rfb"], "10.90.0.3")
	if err != nil {
		return err
	}
	res["guest-guest"].ours = append(res["guest-guest"].ours, mbit(b.ggMiB, d))
	if d, err = b.guestToGuest(bare["pa"], bare["pb"], "10.91.0.3"); err != nil {
		return err
	}
	res["guest-guest"].plain = append(res["guest-guest"].plain, mbit(b.ggMiB, d))
	if d, err = viaUplink(b.up, upMiB, func() error { _, err := transfer(rf["rfa"], "192.0.2.1", 5002, upMiB); return err }); err != nil {
		return err
	}
	res["guest-uplink"].ours = append(res["guest-uplink"].ours, mbit(upMiB, d))
	if d, err = viaUplink(b.up, upMiB, func() error { _, err := transfer(bare["pa"], "192.0.2.1", 5002, upMiB); return err }); err != nil {
		return err
	}
	res["guest-uplink"].plain = append(res["guest-uplink"].plain, mbit(upMiB, d))
	if d, err = viaUplink(b.up, upMiB, func() error {
		return benchenv.Sh("ip", "netns", "exec", b.ns, "sh", "-c", fmt.Sprintf("dd if=/dev/zero bs=64k count=%d 2>/dev/null | busybox nc 192.0.2.1 5002", upMiB*16))
	}); err != nil {
		return err
	}
	res["veth"].plain = append(res["veth"].plain, mbit(upMiB, d))
	if os.Getenv("RF_BENCH_DEBUG") != "" {
		b.printTails()
	}
	fmt.Printf("run %d: guest-guest ours %.0f plain %.0f Mbit/s; guest-uplink ours %.0f plain %.0f; veth %.0f\n", r+1,
		last(res["guest-guest"].ours), last(res["guest-guest"].plain), last(res["guest-uplink"].ours), last(res["guest-uplink"].plain), last(res["veth"].plain))
	return nil
}

// printTails prints the end of the senders' and a receiver's consoles.
func (b *netBench) printTails() {
	for n, g := range map[string]*benchenv.Console{"rfa": b.rf["rfa"], "pa": b.bare["pa"], "rfb": b.rf["rfb"]} {
		s := g.Output()
		fmt.Printf("--- %s\n%s\n", n, s[max(0, len(s)-1500):])
	}
}

// report prints the medians and writes bench/results/net.json.
func (b *netBench) report(res map[string]*sample) error {
	out := map[string]any{"guest_guest_mib": b.ggMiB, "uplink_mib": b.upMiB, "runs": b.runs}
	fmt.Printf("\nmedians over %d runs (guest-guest %d MiB, to the uplink %d MiB), Mbit/s:\n", b.runs, b.ggMiB, b.upMiB)
	for _, k := range []string{"guest-guest", "guest-uplink", "veth"} {
		s := res[k]
		row := map[string]float64{"plain_mbit": median(s.plain)}
		if len(s.ours) > 0 {
			row["ours_mbit"] = median(s.ours)
			row["ratio"] = median(s.ours) / median(s.plain)
			fmt.Printf("  %-13s ringfence %6.0f   plain %6.0f   ratio %.2f\n", k, row["ours_mbit"], row["plain_mbit"], row["ratio"])
		} else {
			fmt.Printf("  %-13s (no guest)          %6.0f\n", k, row["plain_mbit"])
		}
		out[k] = row
	}
	os.MkdirAll("bench/results", 0o755)
	js, _ := json.MarshalIndent(out, "", "  ")
	return os.WriteFile("bench/results/net.json", append(js, '\n'), 0o644)
}

func last(f []float64) float64 { return f[len(f)-1] }

func median(f []float64) float64 {
	s := append([]float64(nil), f...)
	sort.Float64s(s)
	return s[len(s)/2]
}
