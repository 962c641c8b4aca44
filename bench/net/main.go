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
	"sync"
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

// console is a guest's serial line: commands in, output collected.
type console struct {
	w    io.Writer
	mu   sync.Mutex
	out  strings.Builder
	more chan struct{}
}

func newConsole(r io.Reader, w io.Writer) *console {
	c := &console{w: w, more: make(chan struct{}, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			c.mu.Lock()
			c.out.Write(buf[:n])
			c.mu.Unlock()
			select {
			case c.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return c
}

func (c *console) len() int { c.mu.Lock(); defer c.mu.Unlock(); return c.out.Len() }

func (c *console) waitFor(text string, from int, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		s := c.out.String()
		c.mu.Unlock()
		if from <= len(s) && strings.Contains(s[from:], text) {
			return nil
		}
		select {
		case <-c.more:
		case <-deadline:
			return fmt.Errorf("%q not seen within %s; console tail:\n%s", text, timeout, s[max(0, len(s)-800):])
		}
	}
}

// do runs a shell line and waits for marker after it.
func (c *console) do(line, marker string, timeout time.Duration) error {
	off := c.len()
	fmt.Fprintf(c.w, "%s\n", line)
	return c.waitFor(marker, off, timeout)
}

var seq int

// transfer sends mib MiB from one guest to ip:port where a receiver is
// already listening, and returns the elapsed time.
func transfer(from *console, ip string, port, mib int) (time.Duration, error) {
	seq++
	t0 := time.Now()
	// The marker is an arithmetic expansion, so it appears in the output
	// only, not in the echoed command line.
	err := from.do(fmt.Sprintf("dd if=/dev/zero bs=64k count=%d 2>/dev/null | nc %s %d; echo xfer-%d-$((6*7))", mib*16, ip, port, seq),
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
	buf := make([]byte, 256<<10)
	var n int64
	var first time.Time
	for {
		k, err := c.Read(buf)
		if k > 0 && n == 0 {
			first = time.Now()
		}
		n += int64(k)
		if err != nil {
			break
		}
	}
	b, _ := json.Marshal(map[string]any{"bytes": n, "seconds": time.Since(first).Seconds()})
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
	c := newConsole(out, io.Discard)
	if err := c.waitFor("ready", 0, 10*time.Second); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	return func() (int64, time.Duration, error) {
		cmd.Wait()
		c.mu.Lock()
		s := c.out.String()
		c.mu.Unlock()
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

func run(ggMiB, upMiB, runs int, img image.Paths) error {
	if !img.Built() {
		return fmt.Errorf("no default image: run `make image`")
	}
	dir, bin, cleanup, err := benchenv.Workdir("/tmp", "rfbnet")
	if err != nil {
		return err
	}
	defer cleanup()
	ns, up := fmt.Sprintf("rfbn%d", os.Getpid()), fmt.Sprintf("rfbu%d", os.Getpid())
	sh := func(args ...string) error {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %v: %s", args, err, out)
		}
		return nil
	}
	for _, n := range []string{ns, up} {
		if err := sh("ip", "netns", "add", n); err != nil {
			return err
		}
		defer exec.Command("ip", "netns", "del", n).Run()
		sh("ip", "-n", n, "link", "set", "lo", "up")
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
		if err := sh(c...); err != nil {
			return err
		}
	}

	// Ringfence: a daemon in ns, a NAT network, two guests.
	c, stop, err := benchenv.DaemonIn(ns, bin, filepath.Join(dir, "state"), "--vcpu-ratio", "4")
	if err != nil {
		return err
	}
	defer stop()
	ctx := context.Background()
	if _, err := c.CreateNetwork(ctx, api.Network{Name: "bn", NAT: true, Subnet: "10.90.0.0/24"}); err != nil {
		return err
	}
	defer c.DeleteNetwork(ctx, "bn")
	rf := map[string]*console{}
	for i, name := range []string{"rfa", "rfb"} {
		spec := api.DomainSpec{Name: name, Kernel: img.Kernel, Ramdisk: img.Initrd, Cmdline: "console=ttyS0 quiet",
			MemoryMiB: 256, MaxMemMiB: 256, VCPUs: 1, MaxVCPUs: 1,
			Vifs: []api.Vif{{Bridge: "bn", MAC: fmt.Sprintf("00:16:3e:90:00:%02x", i+2), IP: []string{fmt.Sprintf("10.90.0.%d", i+2)}}}}
		if _, err := c.Create(ctx, api.CreateRequest{Spec: spec}); err != nil {
			return fmt.Errorf("creating %s: %w", name, err)
		}
		defer c.Action(ctx, name, "destroy", nil)
		conn, err := c.Console(ctx, name, true)
		if err != nil {
			return err
		}
		defer conn.Close()
		rf[name] = newConsole(conn, conn)
	}
	for i, name := range []string{"rfa", "rfb"} {
		if err := rf[name].waitFor(fmt.Sprintf("eth0 has 10.90.0.%d", i+2), 0, 2*time.Minute); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}

	// Bare QEMU: the same guests on taps on the plain bridge.
	bare := map[string]*console{}
	for i, name := range []string{"pa", "pb"} {
		tap := fmt.Sprintf("ptap%d", i)
		for _, c := range [][]string{
			{"ip", "-n", ns, "tuntap", "add", tap, "mode", "tap", "vnet_hdr"},
			{"ip", "-n", ns, "link", "set", tap, "master", "plainbr"},
			{"ip", "-n", ns, "link", "set", tap, "up"},
		} {
			if err := sh(c...); err != nil {
				return err
			}
		}
		cmd := exec.Command("nsenter", "--net=/run/netns/"+ns, "qemu-system-x86_64", "-machine", "q35,accel=tcg", "-m", "256", "-smp", "1",
			"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
			"-kernel", img.Kernel, "-initrd", img.Initrd, "-append", "console=ttyS0 quiet",
			"-netdev", "tap,id=n0,ifname="+tap+",script=no,downscript=no",
			"-device", fmt.Sprintf("virtio-net-pci,netdev=n0,mac=00:16:3e:91:00:%02x", i+2))
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			return err
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		bare[name] = newConsole(out, in)
	}
	for i, name := range []string{"pa", "pb"} {
		g := bare[name]
		if err := g.waitFor(image.ReadyLine, 0, 2*time.Minute); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		ip := fmt.Sprintf("10.91.0.%d", i+2)
		if err := g.do(fmt.Sprintf("killall udhcpc; ip addr add %s/24 dev eth0; ip route add default via 10.91.0.1; echo ip-$((1+1))-set", ip), "ip-2-set", 30*time.Second); err != nil {
			return err
		}
	}

	// Receivers: guests listen in a loop; the uplink namespace runs one
	// nc per transfer.
	// Receiving guests print the byte count of every transfer.
	for _, g := range []*console{rf["rfb"], bare["pb"]} {
		// stdin is a FIFO opened read-write: it never ends, so nc does not
		// half-close (which ends the sender's nc early) and nothing else
		// in the pipeline outlives the transfer.
		fmt.Fprintf(g.w, "mkfifo /tmp/hold; while true; do echo got-$(nc -l -p 5001 <>/tmp/hold | wc -c)-bytes; done &\n")
	}
	time.Sleep(time.Second)
	guestToGuest := func(from, to *console, ip string) (time.Duration, error) {
		off := to.len()
		d, err := transfer(from, ip, 5001, ggMiB)
		if err != nil {
			return 0, err
		}
		want := fmt.Sprintf("got-%d-bytes", ggMiB<<20)
		if err := to.waitFor(want, off, 30*time.Second); err != nil {
			return 0, fmt.Errorf("receiver at %s: %w", ip, err)
		}
		return d, nil
	}

	type sample struct{ ours, plain []float64 } // Mbit/s
	res := map[string]*sample{"guest-guest": {}, "guest-uplink": {}, "veth": {}}
	mbit := func(mib int, d time.Duration) float64 { return float64(mib) * 8 * 1.048576 / d.Seconds() }
	for r := 0; r < runs; r++ {
		d, err := guestToGuest(rf["rfa"], rf["rfb"], "10.90.0.3")
		if err != nil {
			return err
		}
		res["guest-guest"].ours = append(res["guest-guest"].ours, mbit(ggMiB, d))
		if d, err = guestToGuest(bare["pa"], bare["pb"], "10.91.0.3"); err != nil {
			return err
		}
		res["guest-guest"].plain = append(res["guest-guest"].plain, mbit(ggMiB, d))
		if d, err = viaUplink(up, upMiB, func() error { _, err := transfer(rf["rfa"], "192.0.2.1", 5002, upMiB); return err }); err != nil {
			return err
		}
		res["guest-uplink"].ours = append(res["guest-uplink"].ours, mbit(upMiB, d))
		if d, err = viaUplink(up, upMiB, func() error { _, err := transfer(bare["pa"], "192.0.2.1", 5002, upMiB); return err }); err != nil {
			return err
		}
		res["guest-uplink"].plain = append(res["guest-uplink"].plain, mbit(upMiB, d))
		if d, err = viaUplink(up, upMiB, func() error {
			return sh("ip", "netns", "exec", ns, "sh", "-c", fmt.Sprintf("dd if=/dev/zero bs=64k count=%d 2>/dev/null | busybox nc 192.0.2.1 5002", upMiB*16))
		}); err != nil {
			return err
		}
		res["veth"].plain = append(res["veth"].plain, mbit(upMiB, d))
		if os.Getenv("RF_BENCH_DEBUG") != "" {
			for n, g := range map[string]*console{"rfa": rf["rfa"], "pa": bare["pa"], "rfb": rf["rfb"]} {
				g.mu.Lock()
				s := g.out.String()
				g.mu.Unlock()
				fmt.Printf("--- %s\n%s\n", n, s[max(0, len(s)-1500):])
			}
		}
		fmt.Printf("run %d: guest-guest ours %.0f plain %.0f Mbit/s; guest-uplink ours %.0f plain %.0f; veth %.0f\n", r+1,
			last(res["guest-guest"].ours), last(res["guest-guest"].plain), last(res["guest-uplink"].ours), last(res["guest-uplink"].plain), last(res["veth"].plain))
	}
	out := map[string]any{"guest_guest_mib": ggMiB, "uplink_mib": upMiB, "runs": runs}
	fmt.Printf("\nmedians over %d runs (guest-guest %d MiB, to the uplink %d MiB), Mbit/s:\n", runs, ggMiB, upMiB)
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
	b, _ := json.MarshalIndent(out, "", "  ")
	return os.WriteFile("bench/results/net.json", append(b, '\n'), 0o644)
}

func last(f []float64) float64 { return f[len(f)-1] }

func median(f []float64) float64 {
	s := append([]float64(nil), f...)
	sort.Float64s(s)
	return s[len(s)/2]
}
