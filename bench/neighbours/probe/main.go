// Command probe is the workload bench/neighbours runs inside its guests:
// one static binary (no libc: the default guest is busybox) that the
// bench puts on a small ext4 disk the guest mounts on /mnt. Measuring
// commands print one line "RFPROBE <id> {json}" when done; the
// neighbour's commands (burn, hog, diskflood, tcpflood, udpflood) run
// until killed.
//
//	probe -id N cpu SECS          fixed compute loop: work units per second
//	probe -id N lat SECS          1 ms sleeps: how late each wake-up is
//	probe -id N walk FILE SECS    walk a resident file, then lat, then walk
//	probe -id N disk DEV SECS     random 4k O_DIRECT writes: IOPS, latency
//	probe -id N tcp ADDR SECS     send flat out; the peer says what arrived
//	probe -id N ping ADDR SECS    UDP echo every 10 ms: round trips
//	probe burn | hog | diskflood DEV | tcpflood ADDR | udpflood ADDR
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	id := flag.String("id", "0", "tag of the result line")
	flag.Parse()
	a := flag.Args()
	if len(a) == 0 {
		fail("usage: probe [-id N] cpu|lat|walk|disk|tcp|ping|burn|hog|diskflood|tcpflood|udpflood ...")
	}
	secs := func(i int) time.Duration {
		if len(a) <= i {
			fail(a[0] + ": missing SECS")
		}
		f, err := strconv.ParseFloat(a[i], 64)
		if err != nil || f <= 0 {
			fail(a[0] + ": SECS must be a positive number")
		}
		return time.Duration(f * float64(time.Second))
	}
	arg := func(i int) string {
		if len(a) <= i {
			fail(a[0] + ": missing argument")
		}
		return a[i]
	}
	var res any
	switch a[0] {
	case "cpu":
		res = cpu(secs(1))
	case "lat":
		res = lateness(secs(1))
	case "walk":
		res = walk(arg(1), secs(2))
	case "disk":
		res = disk(arg(1), secs(2))
	case "tcp":
		res = tcpSend(arg(1), secs(2))
	case "ping":
		res = ping(arg(1), secs(2))
	case "burn":
		burn()
	case "hog":
		hog()
	case "diskflood":
		diskFlood(arg(1))
	case "tcpflood":
		tcpFlood(arg(1))
	case "udpflood":
		udpFlood(arg(1))
	default:
		fail("unknown command " + a[0])
	}
	b, _ := json.Marshal(res)
	fmt.Printf("RFPROBE %s %s\n", *id, b)
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "probe:", msg)
	fmt.Println("RFPROBE-ERROR", strings.ReplaceAll(msg, "\n", " "))
	os.Exit(2)
}

// unit is a fixed piece of integer work (xorshift rounds).
func unit(x uint64) uint64 {
	for i := 0; i < 20000; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

var sink uint64

// cpu counts work units done in d: the victim's throughput.
func cpu(d time.Duration) map[string]float64 {
	x, n := uint64(88172645463325252), 0
	t0 := time.Now()
	for time.Since(t0) < d {
		x = unit(x)
		n++
	}
	sink = x
	return map[string]float64{"units_per_s": float64(n) / time.Since(t0).Seconds()}
}

// latStats are wake-up lateness percentiles, in µs.
type latStats struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_us"`
	P99  float64 `json:"p99_us"`
	Max  float64 `json:"max_us"`
	Mean float64 `json:"mean_us"`
}

func percentiles(v []float64) latStats {
	if len(v) == 0 {
		return latStats{}
	}
	sort.Float64s(v)
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	at := func(q float64) float64 { return v[min(len(v)-1, int(q*float64(len(v))))] }
	return latStats{N: len(v), P50: at(0.50), P99: at(0.99), Max: v[len(v)-1], Mean: sum / float64(len(v))}
}

// lateness sleeps 1 ms at a time for d and records how late each wake-up
// was: what a latency-sensitive service in the guest sees.
func lateness(d time.Duration) latStats {
	var late []float64
	t0 := time.Now()
	for time.Since(t0) < d {
		t := time.Now()
		time.Sleep(time.Millisecond)
		late = append(late, float64(time.Since(t)-time.Millisecond)/1e3)
	}
	return percentiles(late)
}

// walk reads one byte of every page of file (the guest's resident working
// set, kept in tmpfs), times that, runs the latency probe for d, and walks
// again; guest major faults are counted over the whole.
func walk(file string, d time.Duration) map[string]any {
	f, err := os.Open(file)
	if err != nil {
		fail(err.Error())
	}
	defer f.Close()
	st, _ := f.Stat()
	m, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		fail("mmap " + file + ": " + err.Error())
	}
	defer syscall.Munmap(m)
	pass := func() float64 {
		t := time.Now()
		var s byte
		for i := 0; i < len(m); i += 4096 {
			s += m[i]
		}
		sink += uint64(s)
		return float64(time.Since(t).Microseconds()) / 1000
	}
	maj0 := vmstat("pgmajfault")
	w1 := pass()
	lat := lateness(d)
	w2 := pass()
	return map[string]any{"walk_ms": []float64{w1, w2}, "mib": len(m) >> 20, "lat": lat, "guest_majflt": vmstat("pgmajfault") - maj0}
}

// vmstat reads one counter of the guest's /proc/vmstat.
func vmstat(key string) int64 {
	b, _ := os.ReadFile("/proc/vmstat")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == key {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

// burn keeps every vCPU busy.
func burn() {
	for i := 1; i < runtime.NumCPU(); i++ {
		go func() {
			for x := uint64(i); ; x = unit(x) {
			}
		}()
	}
	for x := uint64(1); ; x = unit(x) {
	}
}

// hog takes memory 1 MiB at a time, touching every page, until the
// guest's OOM killer (or the host) ends it.
func hog() {
	var held [][]byte
	for i := 1; ; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		held = append(held, b)
		if i%32 == 0 {
			fmt.Printf("hog %d MiB\n", i)
		}
	}
}

// aligned is a page-aligned buffer, as O_DIRECT needs.
func aligned(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		fail("mmap: " + err.Error())
	}
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// openDirect opens a block device for O_DIRECT writes and returns how
// many 4k blocks of it to use (at most 64 MiB's worth).
func openDirect(dev string) (int, int64) {
	fd, err := syscall.Open(dev, syscall.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		fail("open " + dev + ": " + err.Error())
	}
	var size uint64
	const blkGetSize64 = 0x80081272
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), blkGetSize64, uintptr(unsafe.Pointer(&size))); e != 0 {
		fail("size of " + dev + ": " + e.Error())
	}
	return fd, int64(min(size, 64<<20) / 4096)
}

// disk writes random 4k blocks with O_DIRECT for d, one at a time, and
// reports IOPS and each write's latency.
func disk(dev string, d time.Duration) map[string]any {
	fd, blocks := openDirect(dev)
	defer syscall.Close(fd)
	buf := aligned(4096)
	var lat []float64
	t0 := time.Now()
	for time.Since(t0) < d {
		t := time.Now()
		if _, err := syscall.Pwrite(fd, buf, rand.Int64N(blocks)*4096); err != nil {
			fail("write " + dev + ": " + err.Error())
		}
		lat = append(lat, float64(time.Since(t).Microseconds()))
	}
	return map[string]any{"iops": float64(len(lat)) / time.Since(t0).Seconds(), "lat": percentiles(lat)}
}

// diskFlood writes random 4k blocks flat out, four at a time.
func diskFlood(dev string) {
	fd, blocks := openDirect(dev)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			buf := aligned(4096)
			for {
				syscall.Pwrite(fd, buf, rand.Int64N(blocks)*4096)
			}
		}()
	}
	wg.Wait()
}

// tcpSend sends flat out to addr for d, then half-closes and reads the
// peer's count of what arrived (bytes, and seconds from first byte to
// end).
func tcpSend(addr string, d time.Duration) map[string]any {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		fail(err.Error())
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	t0 := time.Now()
	for time.Since(t0) < d {
		c.SetWriteDeadline(t0.Add(d))
		if _, err := c.Write(buf); err != nil && !os.IsTimeout(err) {
			fail("sending to " + addr + ": " + err.Error())
		}
	}
	c.SetWriteDeadline(time.Time{})
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fail("no count from " + addr + ": " + err.Error())
	}
	var got struct {
		Bytes   int64   `json:"bytes"`
		Seconds float64 `json:"seconds"`
	}
	if json.Unmarshal([]byte(line), &got) != nil || got.Seconds <= 0 {
		fail("the peer said " + line)
	}
	// The peer's clock: from the first byte in to the last, so what sat
	// in socket buffers when the sending stopped is not counted as sent
	// in d.
	return map[string]any{"mbit": float64(got.Bytes) * 8 / 1e6 / got.Seconds, "bytes": got.Bytes}
}

// ping sends a UDP datagram every 10 ms for d to an echo server and
// reports the round trips (lost ones are counted, not timed).
func ping(addr string, d time.Duration) map[string]any {
	c, err := net.Dial("udp", addr)
	if err != nil {
		fail(err.Error())
	}
	defer c.Close()
	sent := map[uint32]time.Time{}
	var mu sync.Mutex
	var rtt []float64
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if n >= 4 {
				seq := binary.BigEndian.Uint32(buf)
				mu.Lock()
				if t, ok := sent[seq]; ok {
					rtt = append(rtt, float64(time.Since(t).Microseconds()))
					delete(sent, seq)
				}
				mu.Unlock()
			}
		}
	}()
	msg := make([]byte, 64)
	t0 := time.Now()
	for seq := uint32(0); time.Since(t0) < d; seq++ {
		binary.BigEndian.PutUint32(msg, seq)
		mu.Lock()
		sent[seq] = time.Now()
		mu.Unlock()
		c.Write(msg)
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	return map[string]any{"rtt": percentiles(rtt), "lost": len(sent)}
}

// tcpFlood sends to addr flat out forever, reconnecting if cut.
func tcpFlood(addr string) {
	buf := make([]byte, 64<<10)
	for {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for {
			if _, err := c.Write(buf); err != nil {
				break
			}
		}
		c.Close()
	}
}

// udpFlood sends full-size datagrams to addr as fast as the guest can.
func udpFlood(addr string) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		fail(err.Error())
	}
	buf := make([]byte, 1400)
	for {
		c.Write(buf)
	}
}
