package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// peers starts a source and a destination daemon sharing one namespace,
// trusting the same CA, plus a third with a CA of its own.
func peers(t *testing.T) (src, dst, stranger *Env, dstAddr, strangerAddr string) {
	port := 20000 + os.Getpid()%20000
	// Each host has its own loopback address: a host's names and
	// addresses are its own on the peer list.
	dstAddr = fmt.Sprintf("127.0.0.2:%d", port)
	strangerAddr = fmt.Sprintf("127.0.0.3:%d", port+1)
	srcAddr := fmt.Sprintf("127.0.0.1:%d", port+3)
	src = NewEnvWith(t, EnvOptions{ServeArgs: []string{"--listen", srcAddr, guestStorage()}})
	src.MustRF("host", "trust", "--peer-name", "src", "--name", "127.0.0.1")
	dst = NewEnvWith(t, EnvOptions{Netns: src.Netns, ServeArgs: []string{"--listen", dstAddr, guestStorage()}})
	dst.JoinTo(src, "dst", "127.0.0.2")
	stranger = NewEnvWith(t, EnvOptions{Netns: src.Netns, ServeArgs: []string{"--listen", strangerAddr}})
	stranger.MustRF("host", "trust", "--peer-name", "stranger", "--name", "127.0.0.3")
	return
}

// JoinTo makes e a peer of auth's cluster as name, reached at ip: a token
// from auth, a join here.
func (e *Env) JoinTo(auth *Env, name, ip string) {
	e.t.Helper()
	tok := strings.TrimSpace(auth.MustRF("host", "token", "--peer-name", name))
	e.MustRF("host", "join", tok, "--peer-name", name, "--name", ip)
}

func TestLiveMigration(t *testing.T) {
	src, dst, stranger, dstAddr, strangerAddr := peers(t)
	c := src.Boot("mover", "")
	c.Send(`i=0; while true; do echo tick$i; i=$((i+1)); usleep 10000; done &`)
	c.WaitFor("tick50", 0, 20*time.Second)
	// 3.5 MiB of a marker in guest RAM, to look for on the wire later.
	marker := []byte("RFMARK-7f3a9c\nRFMARK-7f3a9c\n")
	c.Send("printf 'RFMARK-7f3a9c\\n' > /tmp/m; i=0")
	c.Send("while [ $i -lt 18 ]; do cat /tmp/m /tmp/m > /tmp/n; mv /tmp/n /tmp/m; i=$((i+1)); done")
	c.Send("echo marked-$(($(wc -c < /tmp/m)))")
	c.WaitFor("marked-3670016", 0, 20*time.Second)

	// A host with another CA is refused and nothing moves.
	if r := src.RF("migrate", "mover", strangerAddr); r.Code == 0 || !strings.Contains(r.Stderr, "certificate") {
		t.Fatalf("migration to an untrusted host: %+v", r)
	}
	if len(stranger.List()) != 0 || len(stranger.QEMUs()) != 0 || src.Domain("mover").PID == 0 {
		t.Fatal("an untrusted peer received something, or the source lost the domain")
	}

	// Bad input: an unknown host, a name the destination already has, a
	// destination without the memory (refused before anything is copied).
	if r := src.RF("migrate", "mover", "127.0.0.1:1"); r.Code == 0 || !strings.Contains(r.Stderr, "connecting to 127.0.0.1:1") {
		t.Fatalf("migration to nowhere: %+v", r)
	}
	dst.MustRF("create", "-p", dst.WriteConfig("mover", ""))
	if r := src.RF("migrate", "mover", dstAddr); r.Code == 0 || !strings.Contains(r.Stderr, `destination refused: a domain named "mover" already exists`) {
		t.Fatalf("migration onto a name clash: %+v", r)
	}
	dst.MustRF("destroy", "mover")
	smallAddr := fmt.Sprintf("127.0.0.4:%d", 20002+os.Getpid()%20000)
	small := NewEnvWith(t, EnvOptions{Netns: src.Netns, ServeArgs: []string{"--listen", smallAddr, guestStorage(), "--reserve-mem", fmt.Sprint(hostMemMiB(t) - 200)}})
	small.JoinTo(src, "small", "127.0.0.4")
	if r := src.RF("migrate", "mover", smallAddr); r.Code == 0 || !strings.Contains(r.Stderr, "destination refused: memory: mover asks") {
		t.Fatalf("migration to a host without memory: %+v", r)
	}
	if src.Domain("mover").PID == 0 {
		t.Fatal("the source lost the domain after refused migrations")
	}

	// Kill the destination's QEMU as soon as it appears: the source keeps
	// the guest running, the destination keeps nothing.
	var wg sync.WaitGroup
	wg.Add(1)
	var killed bool
	go func() {
		defer wg.Done()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			// Kill it once it has read 20 MB of the stream: mid-transfer.
			if q := dst.QEMUs(); len(q) > 0 && received(t, dst.Netns, dstAddr) > 20<<20 {
				syscall.Kill(q[0], syscall.SIGKILL)
				killed = true
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	r := src.RF("migrate", "mover", dstAddr)
	wg.Wait()
	if !killed || r.Code == 0 || !strings.Contains(r.Stderr, "keeps running here") {
		t.Fatalf("migration with the destination QEMU killed (killed=%v): %+v", killed, r)
	}
	dst.Await("the destination to clean up", 10*time.Second, func() bool { return len(dst.List()) == 0 && len(dst.QEMUs()) == 0 })
	off := len(c.Output())
	c.WaitFor("tick", off, 5*time.Second) // the source guest still runs

	// --cancel stops a migration in flight; the guest stays. A guest that
	// dirties memory fast with a 1 ms downtime target keeps the stream busy.
	off = len(c.Output())
	c.Send("(while true; do dd if=/dev/urandom of=/dev/shm/dirty bs=1M count=32 2>/dev/null; done) & echo dirty-$((3*3))")
	c.WaitFor("dirty-9", off, 10*time.Second)
	cancelled := make(chan Result, 1)
	go func() { cancelled <- src.RF("migrate", "--max-downtime", "1", "mover", dstAddr) }()
	src.Await("the migration to start", 10*time.Second, func() bool { return len(dst.QEMUs()) > 0 && received(t, dst.Netns, dstAddr) > 10<<20 })
	src.MustRF("migrate", "--cancel", "mover")
	if r := <-cancelled; r.Code == 0 || !strings.Contains(r.Stderr, "cancelled; it keeps running here") {
		t.Fatalf("cancelled migration: %+v", r)
	}
	dst.Await("the destination to clean up after the cancel", 40*time.Second, func() bool { return len(dst.List()) == 0 && len(dst.QEMUs()) == 0 })
	c.Send("kill %2; killall dd; rm -f /dev/shm/dirty")
	off = len(c.Output())
	c.WaitFor("tick", off, 5*time.Second)

	// The real move: the counter continues on the destination. A second
	// migrate while it runs is refused. The marker in guest RAM must not
	// cross the wire in clear (the stream is encrypted by default).
	dstPort, _ := strconv.Atoi(dstAddr[strings.LastIndex(dstAddr, ":")+1:])
	wire := sniff(t, src.Netns, dstPort, marker)
	before := lastTick(t, c.Output())
	second := make(chan Result, 1)
	go func() {
		time.Sleep(150 * time.Millisecond)
		second <- src.RF("migrate", "mover", dstAddr)
	}()
	out := src.MustRF("migrate", "--json", "mover", dstAddr)
	if r := <-second; r.Code == 0 || !(strings.Contains(r.Stderr, "already being migrated") || strings.Contains(r.Stderr, "no domain named")) {
		t.Fatalf("a second migration of a migrating domain: %+v", r)
	}
	if n, clear := wire.stop(); clear || n < 4<<20 {
		t.Fatalf("encrypted migration: %d bytes on the wire, guest memory seen in clear: %v", n, clear)
	}
	if len(src.List()) != 0 || len(src.QEMUs()) != 0 {
		t.Fatal("the source kept a copy after a successful migration")
	}
	c2 := dst.Console("mover")
	c2.WaitFor("tick", 0, 20*time.Second)
	first := firstTick(c2.Output())
	c2.WaitFor(fmt.Sprintf("tick%d\r", first+20), 0, 20*time.Second) // it keeps counting
	got := c2.Output()
	if strings.Contains(got, "ringfence: guest ready") {
		t.Fatal("the guest rebooted on the destination")
	}
	for _, bad := range []string{"BUG:", "Oops", "Kernel panic"} {
		if strings.Contains(got, bad) {
			t.Fatalf("destination console shows %q:\n%s", bad, tail(got, 2000))
		}
	}
	if first < before {
		t.Fatalf("counter on the destination starts at %d; it was already %d before the move: the guest was reset", first, before)
	}
	t.Logf("migrate result %s; counter %d before, %d first on the destination", strings.TrimSpace(out), before, first)
	if d := dst.Domain("mover"); d.PID == 0 {
		t.Fatal("not running on the destination")
	}
	// Migrating a domain the source no longer has is a clear error.
	if r := src.RF("migrate", "mover", dstAddr); r.Code == 0 || !strings.Contains(r.Stderr, "no domain named") {
		t.Fatalf("migrating a domain that left: %+v", r)
	}

	// And back, with the stream unencrypted (--plain-stream): the counter
	// goes on from where it was.
	before = lastTick(t, c2.Output())
	srcPort := 20000 + os.Getpid()%20000 + 3
	srcAddr := fmt.Sprintf("127.0.0.1:%d", srcPort)
	wire = sniff(t, src.Netns, srcPort, marker)
	dst.MustRF("migrate", "--plain-stream", "mover", srcAddr)
	// The same capture sees the marker when the stream is plain: the
	// check above can fail.
	if n, clear := wire.stop(); !clear {
		t.Fatalf("plain migration: %d bytes on the wire and no marker in clear: the capture is blind", n)
	}
	c3 := src.Console("mover")
	c3.WaitFor("tick", 0, 20*time.Second)
	if back := firstTick(c3.Output()); back < before {
		t.Fatalf("after the plain-stream move back the counter starts at %d, below %d", back, before)
	}
	if len(dst.List()) != 0 || len(dst.QEMUs()) != 0 {
		t.Fatal("the destination kept a copy after moving the domain back")
	}
}

// received is how many bytes the destination has taken in on its peer
// port (the migration stream goes socket to socket, QEMU to QEMU).
func received(t *testing.T, ns, addr string) int64 {
	_, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command("ip", "netns", "exec", ns, "ss", "-Htin", "state", "established", "sport", "=", ":"+port).Output()
	if err != nil {
		t.Logf("ss: %v", err)
		return 0
	}
	var total int64
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "bytes_received:"); ok {
			var n int64
			fmt.Sscan(v, &n)
			total += n
		}
	}
	return total
}

// TestMigrateWithStorage moves a guest whose disk exists only on the
// source: the disk is copied live while the guest keeps writing to it,
// and every write is there on the destination.
func TestMigrateWithStorage(t *testing.T) {
	src, dst, _, dstAddr, _ := peers(t)
	disk := filepath.Join(src.Dir, "data.img")
	mustRun(t, "cp", "--sparse=always", imgPaths.Disk, disk)
	c := src.Boot("keeper", fmt.Sprintf(`disk = ["file:%s,xvda,w"]`, disk))
	c.WaitFor("/dev/vda mounted on /mnt", 0, 10*time.Second)
	// A file with a known checksum, then a writer that appends a numbered
	// line every 20 ms during the whole migration.
	c.Send("dd if=/dev/urandom of=/mnt/blob bs=1k count=2048 2>/dev/null; sync; md5sum /mnt/blob")
	sumRe := regexp.MustCompile(`([0-9a-f]{32})  /mnt/blob`)
	c.WaitFor("  /mnt/blob", 0, 20*time.Second)
	before := sumRe.FindStringSubmatch(c.Output())[1]
	c.Send(`(i=0; while [ $i -lt 250 ]; do echo line$i >> /mnt/log; i=$((i+1)); usleep 20000; done; sync; echo writer-$((6*7))) &`)
	time.Sleep(500 * time.Millisecond)

	// Without --storage-dir the destination would use the same path, which
	// exists here (both daemons share this host): refused, nothing moves.
	if r := src.RF("migrate", "--with-storage", "keeper", dstAddr); r.Code == 0 || !strings.Contains(r.Stderr, "already exists on the destination") {
		t.Fatalf("copying onto an existing disk: %+v", r)
	}
	if len(dst.List()) != 0 || src.Domain("keeper").PID == 0 {
		t.Fatal("a refused storage migration changed something")
	}

	// The destination decides where a peer may create disks: not in its
	// own state (nor /root/.ssh, /etc...), only in declared guest storage.
	for _, dir := range []string{dst.State, "/root/.ssh", "/var/spool"} {
		r := src.RF("migrate", "--with-storage", "--storage-dir", dir, "keeper", dstAddr)
		if r.Code == 0 || !strings.Contains(r.Stderr, "is refused") {
			t.Fatalf("a peer creating disks in %s: %+v", dir, r)
		}
		if _, err := os.Stat(filepath.Join(dir, "data.img")); err == nil {
			t.Fatalf("a refused storage migration created %s/data.img", dir)
		}
	}
	into := filepath.Join(dst.Dir, "disks")
	os.MkdirAll(into, 0o700)
	out := src.MustRF("migrate", "--with-storage", "--storage-dir", into, "--json", "keeper", dstAddr)
	var res api.MigrationResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.DiskBytes == 0 {
		t.Fatalf("migrate result %q: %v", out, err)
	}
	t.Logf("storage migration: %s", strings.TrimSpace(out))
	if d := dst.Domain("keeper"); d.PID == 0 || d.Spec.Disks[0].Target != filepath.Join(into, "data.img") {
		t.Fatalf("on the destination: pid %d, disk %s", d.PID, d.Spec.Disks[0].Target)
	}
	if len(src.List()) != 0 {
		t.Fatal("the source kept the domain")
	}
	if _, err := os.Stat(disk); err != nil {
		t.Fatalf("the source's disk file must stay (it is the admin's data): %v", err)
	}
	c2 := dst.Console("keeper")
	c2.WaitFor("writer-42", 0, 30*time.Second)
	// Read back from the copied disk, not the page cache.
	c2.Send("echo 3 > /proc/sys/vm/drop_caches; md5sum /mnt/blob; wc -l < /mnt/log; tail -n 1 /mnt/log; grep -c . /mnt/log; echo check-$((2*5))")
	c2.WaitFor("check-10", 0, 20*time.Second)
	got := c2.Output()
	if m := sumRe.FindAllStringSubmatch(got, -1); len(m) == 0 || m[len(m)-1][1] != before {
		t.Fatalf("blob checksum on the destination %v, want %s", m, before)
	}
	if !strings.Contains(got, "\r\n250\r\n") || !strings.Contains(got, "line249") {
		t.Fatalf("the writer's 250 lines are not all on the destination:\n%s", tail(got, 800))
	}
}
