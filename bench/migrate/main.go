// Command migrate measures live migration through ringfence against a bare
// QEMU-to-QEMU migration of the same guest, in one run: for 128 and 512 MiB
// guests, idle and dirtying memory, it reports total time, QMP-reported
// downtime and the guest-visible gap (the longest silence between two lines
// of a counter the guest prints every 10 ms, as seen on the host).
//
// Run as root after `make image`: go run ./bench/migrate
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
	"github.com/ringfence/ringfence/internal/engine/qemu/qmp"
	"github.com/ringfence/ringfence/internal/image"
	"github.com/ringfence/ringfence/internal/peer"
	"github.com/ringfence/ringfence/internal/procfs"
)

const counter = `i=0; while true; do echo tick$i; i=$((i+1)); usleep 10000; done &`
const dirtier = `(while true; do dd if=/dev/zero of=/dev/shm/d bs=1M count=48 2>/dev/null; done) &`

var (
	reps                 *int
	mems, streams, loads *string
	showTimeline         *bool
)

type result struct {
	totalMs, qemuMs, downMs, gapMs float64
	timeline                       string
}

func main() {
	imgDir := flag.String("image", "/var/lib/ringfence/images/default", "default image")
	reps = flag.Int("n", 3, "runs per row (medians are shown)")
	mems = flag.String("mem", "128,512", "guest sizes in MiB")
	streams = flag.String("stream", "tls,plain", "stream modes")
	loads = flag.String("load", "idle,dirty", "guest workloads")
	showTimeline = flag.Bool("timeline", false, "print where each run's time went (ringfence: the destination daemon's timeline)")
	flag.Parse()
	img := image.PathsIn(*imgDir)
	if err := run(img); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// watcher timestamps every tick line it reads and keeps the last arrival.
type watcher struct {
	mu    sync.Mutex
	last  time.Time
	first time.Time
	seen  bool
	tail  []string // the last lines, for a failed run's report
}

func (w *watcher) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		w.mu.Lock()
		if w.tail = append(w.tail, sc.Text()); len(w.tail) > 40 {
			w.tail = w.tail[1:]
		}
		w.mu.Unlock()
		if strings.Contains(sc.Text(), "tick") {
			w.mu.Lock()
			w.last = time.Now()
			if !w.seen {
				w.first, w.seen = w.last, true
			}
			w.mu.Unlock()
		}
	}
}

func (w *watcher) times() (time.Time, time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first, w.last, w.seen
}

// migBench is the benchmark's two daemons (the source the authority, the
// destination its peer) and what to take down at the end.
type migBench struct {
	img            image.Paths
	dir, bin       string
	port           int
	srcDir, dstDir string
	src, dst       *client.Client
	undo           benchenv.Undo
}

func run(img image.Paths) error {
	b := &migBench{img: img}
	defer b.undo.Run()
	for _, step := range []func() error{b.workdir, b.daemons, b.trust} {
		if err := step(); err != nil {
			return err
		}
	}
	b.header()
	for _, mem := range []int{128, 512} {
		for _, dirty := range []bool{false, true} {
			for _, plain := range []bool{false, true} {
				if !strings.Contains(*mems, fmt.Sprint(mem)) || !strings.Contains(*loads, loadName(dirty)) ||
					!strings.Contains(*streams, streamName(plain)) {
					continue
				}
				b.row(mem, dirty, plain)
			}
		}
	}
	return nil
}

func loadName(dirty bool) string   { return map[bool]string{false: "idle", true: "dirty"}[dirty] }
func streamName(plain bool) string { return map[bool]string{false: "tls", true: "plain"}[plain] }

// workdir makes the scratch dir and builds ringfence into it.
func (b *migBench) workdir() error {
	dir, bin, cleanup, err := benchenv.Workdir("/tmp", "rfmig")
	if err != nil {
		return err
	}
	b.undo.Later(cleanup)
	b.dir, b.bin = dir, bin
	b.port = 30000 + os.Getpid()%20000
	b.srcDir, b.dstDir = filepath.Join(dir, "a"), filepath.Join(dir, "b")
	return nil
}

// daemons starts the source and destination daemons.
func (b *migBench) daemons() error {
	src, stopSrc, err := benchenv.Daemon(b.bin, b.srcDir, "--listen", fmt.Sprintf("127.0.0.1:%d", b.port+100))
	if err != nil {
		return err
	}
	b.undo.Later(stopSrc)
	// The destination takes migrated guests whose files are in the
	// default image dir (a peer may name only declared guest storage).
	dst, stopDst, err := benchenv.Daemon(b.bin, b.dstDir, "--listen", fmt.Sprintf("127.0.0.2:%d", b.port), "--disk-roots", filepath.Dir(filepath.Dir(b.img.Kernel)))
	if err != nil {
		return err
	}
	b.undo.Later(stopDst)
	b.src, b.dst = src, dst
	return nil
}

// trust: the source is the authority; the destination joins with a token.
func (b *migBench) trust() error {
	ctx := context.Background()
	if _, err := b.src.Trust(ctx, api.TrustRequest{PeerName: "src", Names: []string{"127.0.0.1"}}); err != nil {
		return err
	}
	tok, err := b.src.Token(ctx, api.TokenRequest{PeerName: "dst"})
	if err != nil {
		return err
	}
	_, err = b.dst.Join(ctx, api.JoinRequest{Token: tok.Token, PeerName: "dst", Names: []string{"127.0.0.2"}})
	return err
}

// header prints the settings and the table's head.
func (b *migBench) header() {
	h, _ := b.src.Host(context.Background())
	fmt.Printf("accelerator %s, QEMU %s; downtime limit 30 ms, bandwidth unlimited, auto-converge, RAM preallocated on both sides; median of %d runs;\n\"tls\": the stream is encrypted (default; ringfence: its daemons' TLS relay, bare: QEMU's own TLS), \"plain\": --plain-stream / no TLS\n\n", h.Accel, h.QEMUVersion, *reps)
	fmt.Printf("%-20s %-10s %10s %10s %12s %10s\n", "guest, stream", "side", "total ms", "qemu ms", "downtime ms", "gap ms")
}

// bareCreds are QEMU's own TLS credentials for the bare runs, from the
// same CA.
func (b *migBench) bareCreds(endpoint string) string {
	d, _ := os.MkdirTemp(b.dir, "creds")
	if err := peer.QEMUCreds(peer.Files{Dir: filepath.Join(b.srcDir, "tls")}, d, endpoint, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "bench: creds:", err)
	}
	return d
}

// row runs one row's reps on both sides and prints its medians.
func (b *migBench) row(mem int, dirty, plain bool) {
	name := fmt.Sprintf("%d MiB %s %s", mem, loadName(dirty), streamName(plain))
	var rfs, bares []result
	// Alternate the two sides so drift on the host hits both.
	// A failed run is reported and the table goes on: one bad
	// migration under TCG should not hide the other figures.
	for i := 0; i < *reps; i++ {
		runRF := func() { rfs = b.runRF(rfs, name, i, mem, dirty, plain) }
		runBare := func() { bares = b.runBare(bares, name, i, mem, dirty, plain) }
		// Alternate which side goes first, so a row's cold start
		// (first allocation of that guest size) is shared.
		if i%2 == 0 {
			runRF()
			runBare()
		} else {
			runBare()
			runRF()
		}
	}
	rf, bare := median(rfs), median(bares)
	fmt.Printf("%-20s %-10s %10.0f %10.0f %12.0f %10.0f\n", name, "ringfence", rf.totalMs, rf.qemuMs, rf.downMs, rf.gapMs)
	fmt.Printf("%-20s %-10s %10.0f %10.0f %12.0f %10.0f\n", "", "bare qemu", bare.totalMs, bare.qemuMs, bare.downMs, bare.gapMs)
	if bare.totalMs > 0 && bare.gapMs > 0 {
		fmt.Printf("%-20s %-10s %10.2f %10s %12s %10.2f\n", "", "ratio", rf.totalMs/bare.totalMs, "", "", rf.gapMs/bare.gapMs)
	}
}

// runRF is run i of a row through ringfence, added to rfs unless it failed.
func (b *migBench) runRF(rfs []result, name string, i, mem int, dirty, plain bool) []result {
	rf, err := viaRingfence(b.src, b.dst, b.img, mem, dirty, plain, fmt.Sprintf("127.0.0.2:%d", b.port))
	if err != nil {
		fmt.Printf("%-20s %-10s run %d failed: %v\n", name, "ringfence", i+1, err)
		return rfs
	}
	if *showTimeline {
		fmt.Printf("  ringfence run %d: total %.0f; destination %s\n", i+1, rf.totalMs, lastTimeline(filepath.Join(b.dstDir, "daemon.log")))
	}
	return append(rfs, rf)
}

// runBare is run i of a row between bare QEMUs, added to bares unless it
// failed.
func (b *migBench) runBare(bares []result, name string, i, mem int, dirty, plain bool) []result {
	var tls *bareTLS
	if !plain {
		tls = &bareTLS{client: b.bareCreds("client"), server: b.bareCreds("server")}
	}
	r, err := viaBare(b.dir, b.img, mem, dirty, tls, b.port+1+i)
	if err != nil {
		fmt.Printf("%-20s %-10s run %d failed: %v\n", name, "bare qemu", i+1, err)
		return bares
	}
	if *showTimeline {
		fmt.Printf("  bare run %d: total %.0f; %s\n", i+1, r.totalMs, r.timeline)
	}
	return append(bares, r)
}

// lastTimeline is the newest migration timeline in a daemon's log.
func lastTimeline(logPath string) string {
	b, _ := os.ReadFile(logPath)
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "domain migrated in") {
			if j := strings.Index(lines[i], "ms="); j >= 0 {
				return lines[i][j:]
			}
		}
	}
	return "(none)"
}

// median takes each column's median on its own.
func median(rs []result) result {
	col := func(f func(result) float64) float64 {
		if len(rs) == 0 {
			return 0
		}
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		sort.Float64s(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return result{
		totalMs: col(func(r result) float64 { return r.totalMs }),
		qemuMs:  col(func(r result) float64 { return r.qemuMs }),
		downMs:  col(func(r result) float64 { return r.downMs }),
		gapMs:   col(func(r result) float64 { return r.gapMs }),
	}
}

func viaRingfence(src, dst *client.Client, img image.Paths, mem int, dirty, plain bool, target string) (result, error) {
	ctx := context.Background()
	spec := api.DomainSpec{Name: "mig", Kernel: img.Kernel, Ramdisk: img.Initrd, MemoryMiB: mem, Cmdline: "console=ttyS0 quiet"}
	if _, err := src.Create(ctx, api.CreateRequest{Spec: spec}); err != nil {
		return result{}, err
	}
	defer dst.Action(ctx, "mig", "destroy", nil)
	defer src.Action(ctx, "mig", "destroy", nil)
	con, err := src.Console(ctx, "mig", true)
	if err != nil {
		return result{}, err
	}
	if err := benchenv.WaitFor(con, image.ReadyLine, 2*time.Minute); err != nil {
		return result{}, err
	}
	ws := &watcher{}
	fmt.Fprintf(con, "%s\n", counter)
	if dirty {
		fmt.Fprintf(con, "%s\n", dirtier)
	}
	go ws.read(con)
	time.Sleep(2 * time.Second)
	// Attach to the destination's console once the incoming domain exists
	// (before it resumes), so its first line is timed when it comes. Every
	// 10 ms: the stream phase lasts >100 ms, and polling every 2 ms (500
	// API calls a second) loaded the destination daemon and the CPU its
	// QEMU starts on, which bare QEMU's side does not have.
	wd := &watcher{}
	attached := make(chan io.Closer, 1)
	go func() {
		for i := 0; i < 1200; i++ {
			if dcon, err := dst.Console(ctx, "mig", true); err == nil {
				attached <- dcon
				wd.read(dcon)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	res, err := src.Migrate(ctx, "mig", api.MigrateRequest{Target: target, DowntimeMs: 30, PlainStream: plain}, nil)
	if err != nil {
		return result{}, err
	}
	r, err := finish(ws, wd, float64(res.TotalMs), float64(res.DowntimeMs))
	r.qemuMs = float64(res.QEMUTotalMs)
	select {
	case c := <-attached:
		c.Close()
	default:
	}
	return r, err
}

func finish(ws, wd *watcher, total, down float64) (result, error) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, _, ok := wd.times(); ok {
			_, lastSrc, _ := ws.times()
			firstDst, _, _ := wd.times()
			return result{totalMs: total, downMs: down, gapMs: float64(firstDst.Sub(lastSrc).Milliseconds())}, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Keep what the destination printed: the one such failure seen so far
	// could not be explained afterwards.
	wd.mu.Lock()
	lines := strings.Join(wd.tail, "\n")
	wd.mu.Unlock()
	f := filepath.Join("bench", "results", fmt.Sprintf("migrate-no-counter-%d.log", time.Now().Unix()))
	os.MkdirAll(filepath.Dir(f), 0o755)
	os.WriteFile(f, []byte(lines+"\n"), 0o644)
	return result{}, fmt.Errorf("no counter on the destination (its console's last lines: %s)", f)
}

// bareTLS are QEMU credential dirs for a bare run with TLS.
type bareTLS struct{ client, server string }

// bareRun is one bare migration: its two QEMUs, their monitors, the
// guest's counter as seen from each side, and where the time went.
type bareRun struct {
	dir    string
	img    image.Paths
	mem    int
	dirty  bool
	tls    *bareTLS
	port   int
	undo   benchenv.Undo
	ws, wd *watcher
	qctx   context.Context
	m, dm  *qmp.Monitor
	t0     time.Time
	tl     []string
}

// viaBare migrates the same guest between two plain QEMUs over TCP, the
// way a careful script would: the destination is started with the same
// memory settings and -incoming defer, told to listen over QMP once it is
// up, then the source migrates. "total" runs from starting the destination
// to the guest running there, as ringfence's does.
func viaBare(dir string, img image.Paths, mem int, dirty bool, tls *bareTLS, port int) (result, error) {
	b := &bareRun{dir: dir, img: img, mem: mem, dirty: dirty, tls: tls, port: port, ws: &watcher{}, wd: &watcher{}}
	defer b.undo.Run()
	for _, step := range []func() error{b.startSource, b.dialSource, b.startDest} {
		if err := step(); err != nil {
			return result{}, err
		}
	}
	st, err := b.migrate()
	if err != nil {
		return result{}, err
	}
	if err := b.waitRunning(); err != nil {
		return result{}, err
	}
	total := float64(time.Since(b.t0).Milliseconds())
	b.mark("running")
	r, err := finish(b.ws, b.wd, total, float64(st.Downtime))
	r.qemuMs = float64(st.TotalTime)
	r.timeline = strings.Join(b.tl, " ")
	return r, err
}

// args is a bare QEMU's command line with its monitor on qmpSock.
func (b *bareRun) args(qmpSock string, extra ...string) []string {
	return append([]string{"-machine", "q35,accel=tcg", "-m", fmt.Sprint(b.mem), "-mem-prealloc", "-smp", "1", "-nodefaults", "-no-user-config",
		"-display", "none", "-serial", "stdio", "-kernel", b.img.Kernel, "-initrd", b.img.Initrd, "-append", "console=ttyS0 quiet",
		"-qmp", "unix:" + qmpSock + ",server=on,wait=off"}, extra...)
}

// mark notes how long since the destination was started step took.
func (b *bareRun) mark(step string) {
	b.tl = append(b.tl, fmt.Sprintf("%s=%.1f", step, float64(time.Since(b.t0).Microseconds())/1000))
}

func (b *bareRun) sourceSock() string { return filepath.Join(b.dir, "bs.qmp") }
func (b *bareRun) destSock() string   { return filepath.Join(b.dir, "bd.qmp") }

// startSource boots the source guest and starts its counter (and
// dirtier).
func (b *bareRun) startSource() error {
	os.Remove(b.sourceSock())
	os.Remove(b.destSock())
	var srcTLS []string
	if b.tls != nil {
		b.undo.Later(func() { os.RemoveAll(b.tls.client) })
		b.undo.Later(func() { os.RemoveAll(b.tls.server) })
		srcTLS = []string{"-object", "tls-creds-x509,id=t0,endpoint=client,dir=" + b.tls.client}
	}
	srcCmd := exec.Command("qemu-system-x86_64", b.args(b.sourceSock(), srcTLS...)...)
	sin, _ := srcCmd.StdinPipe()
	sout, _ := srcCmd.StdoutPipe()
	if err := srcCmd.Start(); err != nil {
		return err
	}
	b.undo.Later(func() { srcCmd.Process.Kill(); srcCmd.Wait() })
	pr, pw := io.Pipe()
	go io.Copy(pw, sout)
	if err := benchenv.WaitFor(pr, image.ReadyLine, 2*time.Minute); err != nil {
		return err
	}
	fmt.Fprintf(sin, "%s\n", counter)
	if b.dirty {
		fmt.Fprintf(sin, "%s\n", dirtier)
	}
	go b.ws.read(pr)
	time.Sleep(2 * time.Second)
	return nil
}

// dialSource connects to the source's monitor (the run's 30 s start
// here) and sets its migration parameters.
func (b *bareRun) dialSource() error {
	qctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	b.undo.Later(cancel)
	b.qctx = qctx
	m, err := qmp.Dial(qctx, b.sourceSock())
	if err != nil {
		return err
	}
	b.undo.Later(func() { m.Close() })
	b.m = m
	params := map[string]any{"max-bandwidth": int64(1) << 40, "downtime-limit": 30}
	if b.tls != nil {
		params["tls-creds"], params["tls-hostname"] = "t0", "127.0.0.1"
	}
	if err := m.Execute(qctx, "migrate-set-parameters", params, nil); err != nil {
		return err
	}
	m.Execute(qctx, "migrate-set-capabilities", map[string]any{"capabilities": []map[string]any{{"capability": "auto-converge", "state": true}}}, nil)
	return nil
}

// startDest starts the destination QEMU, waiting for an incoming
// migration, and connects to its monitor; the total starts here.
func (b *bareRun) startDest() error {
	var dstTLS []string
	if b.tls != nil {
		dstTLS = []string{"-object", "tls-creds-x509,id=t0,endpoint=server,verify-peer=on,dir=" + b.tls.server}
	}
	b.t0 = time.Now()
	dstCmd := exec.Command("qemu-system-x86_64", b.args(b.destSock(), append(dstTLS, "-incoming", "defer")...)...)
	dout, _ := dstCmd.StdoutPipe()
	if err := dstCmd.Start(); err != nil {
		return err
	}
	b.undo.Later(func() { dstCmd.Process.Kill(); dstCmd.Wait() })
	go b.wd.read(dout)
	dm, err := qmp.Dial(b.qctx, b.destSock())
	if err != nil {
		return err
	}
	b.undo.Later(func() { dm.Close() })
	b.dm = dm
	b.mark("qemu-up")
	run, wait := procfs.ProcessSchedStat(dstCmd.Process.Pid)
	b.tl = append(b.tl, fmt.Sprintf("oncpu=%.0f rqwait=%.0f", float64(run)/1e6, float64(wait)/1e6))
	return nil
}

// bareStatus is what query-migrate says of a migration.
type bareStatus struct {
	Status    string `json:"status"`
	TotalTime int64  `json:"total-time"`
	Downtime  int64  `json:"downtime"`
}

// migrate has the destination listen, the source migrate to it, and
// waits until the source says it completed.
func (b *bareRun) migrate() (bareStatus, error) {
	var st bareStatus
	qctx := b.qctx
	if b.tls != nil {
		if err := b.dm.Execute(qctx, "migrate-set-parameters", map[string]any{"tls-creds": "t0"}, nil); err != nil {
			return st, err
		}
	}
	uri := fmt.Sprintf("tcp:127.0.0.1:%d", b.port)
	if err := b.dm.Execute(qctx, "migrate-incoming", map[string]any{"uri": uri}, nil); err != nil {
		return st, err
	}
	b.mark("listening")
	if err := b.m.Execute(qctx, "migrate", map[string]any{"uri": uri}, nil); err != nil {
		return st, err
	}
	for {
		raw := json.RawMessage{}
		if err := b.m.Execute(qctx, "query-migrate", nil, &raw); err != nil {
			return st, err
		}
		json.Unmarshal(raw, &st)
		if st.Status == "completed" {
			b.mark("completed")
			return st, nil
		}
		if st.Status == "failed" {
			return st, fmt.Errorf("bare migration failed")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitRunning waits for the destination to run the guest: an incoming
// QEMU started without -S runs it once loaded.
func (b *bareRun) waitRunning() error {
	for {
		s, err := b.dm.QueryStatus(b.qctx)
		if err != nil {
			return err
		}
		if s.Status == "running" {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
}
