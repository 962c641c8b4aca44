package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/image"
)

func fileSum(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

// TestPoolsAndThinClones: a pool, a template put in it, a thin clone a
// guest boots from and writes to while the template stays byte-identical,
// and the refusals that keep data safe.
func TestPoolsAndThinClones(t *testing.T) {
	e := NewEnv(t)
	dir := filepath.Join(e.Dir, "pools", "fast")
	e.MustRF("pool", "create", "fast", "--dir", dir)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("pool dir: %v %v", fi, err)
	}
	// Bad input: a pool inside another, names that would leave the pool.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"pool", "create", "inner", "--dir", filepath.Join(dir, "inner")}, "inside pool fast"},
		{[]string{"pool", "create", "outer", "--dir", filepath.Join(e.Dir, "pools")}, "contains pool fast"},
		{[]string{"pool", "create", "fast", "--dir", filepath.Join(e.Dir, "other")}, "already exists"},
		{[]string{"volume", "create", "fast", "../escape.img", "1G"}, "is not a valid"},
		{[]string{"volume", "create", "fast", "a/b.img", "1G"}, "is not a valid"},
		{[]string{"volume", "create", "fast", "x.img", "10Q"}, "size"},
		{[]string{"volume", "create", "nopool", "x.img", "1G"}, "no pool named"},
		{[]string{"volume", "create", "fast", "x.img", "--from", "missing.img"}, "has no volume missing.img"},
	} {
		if r := e.RF(c.args...); r.Code == 0 || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("%v: %+v, want %q", c.args, r, c.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("bad input left files in the pool: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(e.Dir, "other")); err == nil {
		t.Fatal("a refused pool create made its directory")
	}

	// A template is any image put in the pool's directory.
	tpl := filepath.Join(dir, "debian.img")
	mustRun(t, "cp", "--sparse=always", imgPaths.Disk, tpl)
	tplSum := fileSum(t, tpl)
	start := time.Now()
	e.MustRF("volume", "create", "fast", "web01.qcow2", "--from", "debian.img")
	t.Logf("thin clone of a %d MiB template: %v", fileSize(t, tpl)>>20, time.Since(start))
	var vols []api.Volume
	json.Unmarshal([]byte(e.MustRF("volume", "list", "fast", "--json")), &vols)
	if len(vols) != 2 || vols[1].Name != "web01.qcow2" || vols[1].Backing != tpl || vols[1].Format != "qcow2" {
		t.Fatalf("volumes: %+v", vols)
	}

	clone := filepath.Join(dir, "web01.qcow2")
	c := e.Boot("web01", "disk = [ 'format=qcow2,vdev=xvda,access=rw,target="+clone+"' ]")
	c.WaitFor("/dev/vda mounted on /mnt", 0, 10*time.Second)
	c.Send("dd if=/dev/urandom of=/mnt/new bs=1k count=1024 2>/dev/null; sync; echo wrote-$((40+2))")
	c.WaitFor("wrote-42", 0, 20*time.Second)
	if r := e.RF("volume", "delete", "fast", "web01.qcow2"); r.Code == 0 || !strings.Contains(r.Stderr, "attached to web01") {
		t.Fatalf("deleting an attached volume: %+v", r)
	}
	if r := e.RF("volume", "delete", "fast", "debian.img"); r.Code == 0 || !strings.Contains(r.Stderr, "template of web01.qcow2") {
		t.Fatalf("deleting a template with clones: %+v", r)
	}
	if r := e.RF("pool", "delete", "fast"); r.Code == 0 || !strings.Contains(r.Stderr, "still has volumes") {
		t.Fatalf("deleting a pool with volumes: %+v", r)
	}
	e.MustRF("destroy", "web01")
	if got := fileSum(t, tpl); got != tplSum {
		t.Fatal("the guest's writes reached the template")
	}
	json.Unmarshal([]byte(e.MustRF("volume", "list", "fast", "--json")), &vols)
	if vols[1].AllocatedB < 1<<20 {
		t.Fatalf("the clone holds %d bytes after a 1 MiB write", vols[1].AllocatedB)
	}
	e.MustRF("volume", "resize", "fast", "web01.qcow2", "64M")
	e.MustRF("volume", "delete", "fast", "web01.qcow2")
	e.MustRF("volume", "delete", "fast", "debian.img")
	e.MustRF("pool", "delete", "fast")
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("the empty pool directory stayed")
	}
	if out := e.MustRF("pool", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("pools left: %s", out)
	}
}

func fileSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestCloneRunning: clone a running domain (its disk in a pool), the
// clone boots with its own MAC, and neither sees the other's writes.
func TestCloneRunning(t *testing.T) {
	e := NewEnv(t)
	mustRun(t, "ip", "-n", e.Netns, "link", "add", "clbr0", "type", "bridge")
	dir := filepath.Join(e.Dir, "pool")
	e.MustRF("pool", "create", "p", "--dir", dir)
	disk := filepath.Join(dir, "prod.img")
	mustRun(t, "cp", "--sparse=always", imgPaths.Disk, disk)
	c := e.Boot("prod", "disk = [ 'file:"+disk+",xvda,w' ]\nvif = [ 'bridge=clbr0' ]")
	c.WaitFor("/dev/vda mounted on /mnt", 0, 10*time.Second)
	c.Send("echo before > /mnt/mark; sync; echo marked-$((3*3))")
	c.WaitFor("marked-9", 0, 10*time.Second)

	out := e.MustRF("clone", "--json", "prod", "test")
	var d api.Domain
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	src := e.Domain("prod")
	if d.Spec.Vifs[0].MAC == src.Spec.Vifs[0].MAC {
		t.Fatalf("the clone has the source's MAC %s", d.Spec.Vifs[0].MAC)
	}
	if d.Spec.Disks[0].Target != filepath.Join(dir, "test-vda.qcow2") || !strings.HasPrefix(src.Spec.Disks[0].Target, filepath.Join(dir, "prod-vda.")) {
		t.Fatalf("disks: clone %s, source now %s", d.Spec.Disks[0].Target, src.Spec.Disks[0].Target)
	}
	var vols []api.Volume
	json.Unmarshal([]byte(e.MustRF("volume", "list", "p", "--json")), &vols)
	for _, v := range vols {
		if v.Name != "prod.img" && v.Backing != disk {
			t.Errorf("volume %s backs onto %q, want the frozen %s", v.Name, v.Backing, disk)
		}
	}
	frozen := fileSum(t, disk)

	c2 := e.Console("test")
	c2.WaitFor(image.ReadyLine, 0, 90*time.Second)
	c2.Send("cat /mnt/mark; cat /sys/class/net/eth0/address; echo clone > /mnt/mark; sync; echo cl-$((2*2))")
	c2.WaitFor("cl-4", 0, 10*time.Second)
	if got := c2.Output(); !strings.Contains(got, "before") || !strings.Contains(got, d.Spec.Vifs[0].MAC) {
		t.Fatalf("the clone should see the source's data and its own MAC %s:\n%s", d.Spec.Vifs[0].MAC, tail(got, 600))
	}
	// The source keeps running on its overlay; its writes stay its own.
	off := len(c.Output())
	c.Send("echo 3 > /proc/sys/vm/drop_caches; cat /mnt/mark; echo after > /mnt/mark2; sync; echo src-$((5*5))")
	c.WaitFor("src-25", off, 10*time.Second)
	if got := c.Output()[off:]; !strings.Contains(got, "before") || strings.Contains(got, "clone") {
		t.Fatalf("the source sees the clone's write:\n%s", got)
	}
	off = len(c2.Output())
	c2.Send("echo 3 > /proc/sys/vm/drop_caches; ls /mnt; echo ls-$((6*6))")
	c2.WaitFor("ls-36", off, 10*time.Second)
	if strings.Contains(c2.Output()[off:], "mark2") {
		t.Fatal("the clone sees the source's later write")
	}
	if fileSum(t, disk) != frozen {
		t.Fatal("the frozen image changed")
	}
	// Bad input: the name is taken; an unknown source.
	if r := e.RF("clone", "prod", "test"); r.Code == 0 || !strings.Contains(r.Stderr, "already exists") {
		t.Fatalf("clone onto a taken name: %+v", r)
	}
	if r := e.RF("clone", "nosuch", "x"); r.Code == 0 || !strings.Contains(r.Stderr, "no domain") {
		t.Fatalf("clone of an unknown domain: %+v", r)
	}
	// The source restarts from its record: its overlay, not the frozen image.
	e.MustRF("destroy", "test")
	oldID := e.Domain("prod").ID
	e.MustRF("reboot", "prod")
	e.Await("prod to come back", 30*time.Second, func() bool { d := e.Domain("prod"); return d.ID != oldID && d.PID != 0 })
	c3 := e.Console("prod")
	time.Sleep(300 * time.Millisecond) // the history first
	c3.WaitFor(image.ReadyLine, len(c3.Output()), 90*time.Second)
	off = len(c3.Output())
	c3.Send("ls /mnt; echo re-$((7*7))")
	c3.WaitFor("re-49", off, 10*time.Second)
	if !strings.Contains(c3.Output()[off:], "mark2") {
		t.Fatal("after a restart the source lost the writes it made on its overlay")
	}
}

// TestSnapshots: a memory snapshot brings back the running moment (the
// counter resumes from its value then) and the disk bytes of then; a
// disk-only snapshot restores the disk of a stopped domain.
func TestSnapshots(t *testing.T) {
	e := NewEnv(t)
	disk := filepath.Join(e.Dir, "vm.qcow2")
	mustRun(t, "qemu-img", "convert", "-O", "qcow2", imgPaths.Disk, disk)
	raw := filepath.Join(e.Dir, "raw.img")
	mustRun(t, "cp", "--sparse=always", imgPaths.Disk, raw)
	cfg := "disk = [ 'format=qcow2,vdev=xvda,access=rw,target=" + disk + "' ]"
	c := e.Boot("snappy", cfg)
	c.WaitFor("/dev/vda mounted on /mnt", 0, 10*time.Second)
	sumRe := regexp.MustCompile(`([0-9a-f]{32})  /mnt/blob`)
	c.Send("dd if=/dev/urandom of=/mnt/blob bs=1k count=512 2>/dev/null; sync; md5sum /mnt/blob")
	c.WaitFor("  /mnt/blob", 0, 20*time.Second)
	orig := sumRe.FindStringSubmatch(c.Output())[1]
	c.Send(`i=0; while true; do echo tick$i; i=$((i+1)); usleep 100000; done &`)
	c.WaitFor("tick20", 0, 20*time.Second)

	e.MustRF("snapshot", "create", "snappy", "s1", "--memory")
	at := lastTick(t, c.Output())
	c.WaitFor(fmt.Sprintf("tick%d\r", at+20), 0, 20*time.Second) // it runs on
	off := len(c.Output())
	c.Send("dd if=/dev/zero of=/mnt/blob bs=1k count=512 2>/dev/null; sync; md5sum /mnt/blob")
	c.WaitFor("  /mnt/blob", off, 20*time.Second)
	if m := sumRe.FindAllStringSubmatch(c.Output()[off:], -1); len(m) == 0 || m[0][1] == orig {
		t.Fatal("the overwrite did not change the blob")
	}
	before := lastTick(t, c.Output())

	var snaps []api.Snapshot
	json.Unmarshal([]byte(e.MustRF("snapshot", "list", "snappy", "--json")), &snaps)
	if len(snaps) != 1 || !snaps[0].Memory || snaps[0].Disks[0].Guest != "vda" {
		t.Fatalf("snapshots: %+v", snaps)
	}
	// Bad input: a taken name, an unknown snapshot, a raw disk.
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"snapshot", "create", "snappy", "s1"}, "already has a snapshot s1"},
		{[]string{"snapshot", "revert", "snappy", "nope"}, "has no snapshot nope"},
		{[]string{"snapshot", "create", "snappy", "../x"}, "is not a valid"},
	} {
		if r := e.RF(bad.args...); r.Code == 0 || !strings.Contains(r.Stderr, bad.want) {
			t.Errorf("%v: %+v, want %q", bad.args, r, bad.want)
		}
	}
	e.Boot("flat", "disk = [ 'file:"+raw+",xvda,w' ]")
	if r := e.RF("snapshot", "create", "flat", "s"); r.Code == 0 || !strings.Contains(r.Stderr, "qcow2") {
		t.Fatalf("snapshot of a raw disk: %+v", r)
	}
	e.MustRF("destroy", "flat")

	e.MustRF("snapshot", "revert", "snappy", "s1")
	c2 := e.Console("snappy") // a new console: only what the restored guest printed
	c2.WaitFor("tick", 0, 20*time.Second)
	first := firstTick(c2.Output())
	if first > at+5 || first >= before || first < at-5 {
		t.Fatalf("after revert the counter resumes at %d; it was %d at the snapshot and %d before the revert", first, at, before)
	}
	if strings.Contains(c2.Output(), image.ReadyLine) {
		t.Fatal("the guest booted instead of resuming")
	}
	off = len(c2.Output())
	c2.Send("kill %1; echo 3 > /proc/sys/vm/drop_caches; md5sum /mnt/blob")
	c2.WaitFor("  /mnt/blob", off, 20*time.Second)
	if m := sumRe.FindAllStringSubmatch(c2.Output()[off:], -1); len(m) == 0 || m[0][1] != orig {
		t.Fatalf("blob after revert %v, want %s", m, orig)
	}

	// Disk only: snapshot, overwrite, stop; revert; the next boot sees the
	// bytes of the snapshot.
	e.MustRF("snapshot", "create", "snappy", "s2")
	off = len(c2.Output())
	c2.Send("dd if=/dev/zero of=/mnt/blob bs=1k count=512 2>/dev/null; sync; echo zeroed-$((8*8))")
	c2.WaitFor("zeroed-64", off, 20*time.Second)
	if r := e.RF("snapshot", "revert", "snappy", "s2"); r.Code == 0 || !strings.Contains(r.Stderr, "holds no memory") {
		t.Fatalf("disk-only revert of a running domain: %+v", r)
	}
	e.MustRF("destroy", "snappy")
	e.MustRF("snapshot", "revert", "snappy", "s2")
	c3 := e.Boot("snappy", cfg)
	off = len(c3.Output())
	c3.Send("md5sum /mnt/blob")
	c3.WaitFor("  /mnt/blob", off, 20*time.Second)
	if m := sumRe.FindAllStringSubmatch(c3.Output()[off:], -1); len(m) == 0 || m[0][1] != orig {
		t.Fatalf("blob after a disk-only revert %v, want %s", m, orig)
	}
	e.MustRF("destroy", "snappy")
	e.MustRF("snapshot", "delete", "snappy", "s1")
	e.MustRF("snapshot", "delete", "snappy", "s2")
	if out, _ := runOut("qemu-img", "snapshot", "-l", disk); strings.Contains(out, "s1") || strings.Contains(out, "s2") {
		t.Fatalf("snapshots left in the image:\n%s", out)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.State, "snapshots", "snappy")); len(ents) != 0 {
		t.Fatalf("memory state files left: %v", ents)
	}
}

// TestExportImport: a running domain exported (it keeps running), the
// archive imported on a second daemon boots with identical disk bytes;
// a truncated or bit-flipped archive is refused with nothing imported.
func TestExportImport(t *testing.T) {
	a := NewEnv(t)
	b := NewEnvWith(t, EnvOptions{Netns: a.Netns})
	disk := filepath.Join(a.Dir, "data.qcow2")
	mustRun(t, "qemu-img", "convert", "-O", "qcow2", imgPaths.Disk, disk)
	c := a.Boot("carry", "disk = [ 'format=qcow2,vdev=xvda,access=rw,target="+disk+"' ]")
	c.WaitFor("/dev/vda mounted on /mnt", 0, 10*time.Second)
	sumRe := regexp.MustCompile(`([0-9a-f]{32})  /mnt/blob`)
	c.Send("dd if=/dev/urandom of=/mnt/blob bs=1k count=1024 2>/dev/null; sync; md5sum /mnt/blob")
	c.WaitFor("  /mnt/blob", 0, 20*time.Second)
	orig := sumRe.FindStringSubmatch(c.Output())[1]
	pid := a.Domain("carry").PID

	archive := filepath.Join(a.Dir, "carry.rfx")
	var res api.ExportResult
	if err := json.Unmarshal([]byte(a.MustRF("export", "carry", "-o", archive, "--json")), &res); err != nil || res.Bytes == 0 {
		t.Fatalf("export: %+v %v", res, err)
	}
	t.Logf("export: %d bytes from %d in %d ms", res.Bytes, res.InputBytes, res.Ms)
	if a.Domain("carry").PID != pid {
		t.Fatal("the domain did not keep running through the export")
	}
	off := len(c.Output())
	c.Send("echo still-$((4*4))")
	c.WaitFor("still-16", off, 10*time.Second)
	if ents, _ := filepath.Glob(filepath.Join(a.Dir, ".ringfence-export-*")); len(ents) != 0 {
		t.Fatalf("scratch left: %v", ents)
	}
	if r := a.RF("export", "carry", "-o", archive); r.Code == 0 || !strings.Contains(r.Stderr, "already exists") {
		t.Fatalf("export over an existing file: %+v", r)
	}

	// Damaged archives: refused, nothing imported, nothing left.
	data, _ := os.ReadFile(archive)
	truncated := filepath.Join(b.Dir, "trunc.rfx")
	os.WriteFile(truncated, data[:len(data)*2/3], 0o600)
	flipped := filepath.Join(b.Dir, "flip.rfx")
	bad := append([]byte(nil), data...)
	bad[len(bad)/2] ^= 0x40
	os.WriteFile(flipped, bad, 0o600)
	for _, f := range []string{truncated, flipped} {
		r := b.RF("import", f)
		if r.Code == 0 || !(strings.Contains(r.Stderr, "truncated") || strings.Contains(r.Stderr, "corrupt") || strings.Contains(r.Stderr, "damaged")) {
			t.Fatalf("import of %s: %+v", filepath.Base(f), r)
		}
		if len(b.List()) != 0 || len(b.QEMUs()) != 0 {
			t.Fatalf("a damaged archive (%s) created something", filepath.Base(f))
		}
		if ents, _ := os.ReadDir(filepath.Join(b.State, "imports")); len(ents) != 0 {
			t.Fatalf("a damaged archive (%s) left files: %v", filepath.Base(f), ents)
		}
	}

	// The real import, on the second daemon, under the same name.
	b.names = append(b.names, "carry")
	b.MustRF("import", archive)
	c2 := b.Console("carry")
	c2.WaitFor(image.ReadyLine, 0, 90*time.Second)
	off = len(c2.Output())
	c2.Send("md5sum /mnt/blob")
	c2.WaitFor("  /mnt/blob", off, 20*time.Second)
	if m := sumRe.FindAllStringSubmatch(c2.Output()[off:], -1); len(m) == 0 || m[0][1] != orig {
		t.Fatalf("blob on the imported domain %v, want %s", m, orig)
	}
	d := b.Domain("carry")
	if !strings.HasPrefix(d.Spec.Disks[0].Target, filepath.Join(b.State, "imports", "carry")) || d.Spec.Vifs != nil && len(d.Spec.Vifs) != len(a.Domain("carry").Spec.Vifs) {
		t.Fatalf("imported spec: %+v", d.Spec)
	}
	if r := b.RF("import", archive); r.Code == 0 || !strings.Contains(r.Stderr, "already exists") {
		t.Fatalf("importing a name that exists: %+v", r)
	}
}

// TestPhyLoopDevice: a block device as phy: (a loop device stands in for
// an LVM volume: this machine has no device-mapper) — the guest's writes
// land on the device.
func TestPhyLoopDevice(t *testing.T) {
	e := NewEnv(t)
	img := filepath.Join(e.Dir, "lv.img")
	mustRun(t, "cp", "--sparse=always", imgPaths.Disk, img)
	out, err := runOut("losetup", "-f", "--show", img)
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(out)
	detached := false
	t.Cleanup(func() {
		if !detached {
			runOut("losetup", "-d", dev)
		}
	})
	c := e.Boot("blk", "disk = [ 'phy:"+dev+",xvda,w' ]")
	c.WaitFor("/dev/vda mounted on /mnt", 0, 10*time.Second)
	c.Send("echo through-the-device > /mnt/phy.txt; sync; echo done-$((9*9))")
	c.WaitFor("done-81", 0, 10*time.Second)
	if d := e.Domain("blk"); d.Spec.Disks[0].Target != dev {
		t.Fatalf("disk target %s, want %s", d.Spec.Disks[0].Target, dev)
	}
	// The same device read-write in a second domain is refused.
	if r := e.RF("create", e.WriteConfig("blk2", "disk = [ 'phy:"+dev+",xvda,w' ]")); r.Code == 0 || !strings.Contains(r.Stderr, "already in use by domain blk") {
		t.Fatalf("a second writer on the device: %+v", r)
	}
	e.MustRF("destroy", "blk")
	runOut("losetup", "-d", dev)
	detached = true
	got, err := runOut("debugfs", "-R", "cat /phy.txt", img)
	if err != nil || !strings.Contains(got, "through-the-device") {
		t.Fatalf("the guest's write is not in the backing file: %v %q", err, got)
	}
}

// TestBlockHotplugAndCD: a disk attached to a running guest appears as
// /sys/block/vdX and goes away on detach; a CD-ROM drive takes and gives
// back a medium; refusals for what cannot be done.
func TestBlockHotplugAndCD(t *testing.T) {
	e := NewEnv(t)
	extra := filepath.Join(e.Dir, "extra.img")
	mustRun(t, "truncate", "-s", "64M", extra)
	iso := filepath.Join(e.Dir, "tools.iso")
	mustRun(t, "truncate", "-s", "4M", iso)
	c := e.Boot("hot", "disk = [ ',hdc:cdrom,r' ]\nhotplug_slots = 2")
	list := func() []api.BlockDevice {
		var out []api.BlockDevice
		json.Unmarshal([]byte(e.MustRF("block-list", "hot", "--json")), &out)
		return out
	}
	if l := list(); len(l) != 1 || !l[0].CDROM || l[0].Inserted {
		t.Fatalf("at boot: %+v", l)
	}

	e.MustRF("block-attach", "hot", "file:"+extra+",xvdb,w")
	l := list()
	if len(l) != 2 || l[1].Guest == "" || !l[1].Inserted || l[1].Port == "" {
		t.Fatalf("after attach: %+v", l)
	}
	// The guest names virtio disks in the order it finds them, so look
	// for the 64 MiB one (131072 sectors), waiting for the hot-plug.
	has64 := `grep -l '^131072$' /sys/block/*/size 2>/dev/null | grep -q .`
	off := len(c.Output())
	c.Send("for i in $(seq 1 60); do " + has64 + " && break; sleep 0.5; done; " + has64 + " && echo present-$((3*11)) || echo absent-$((3*11))")
	c.WaitFor("-33", off, 40*time.Second)
	if got := c.Output()[off:]; !strings.Contains(got, "present-33") {
		t.Fatalf("the guest does not see the attached 64 MiB disk:\n%s", got)
	}
	// Refusals: the same image again (in use), a boot-time device.
	if r := e.RF("block-attach", "hot", "file:"+extra+",xvdc,w"); r.Code == 0 || !strings.Contains(r.Stderr, "already in use") {
		t.Fatalf("attaching an image in use: %+v", r)
	}
	if r := e.RF("block-detach", "hot", "hdc"); r.Code == 0 || !strings.Contains(r.Stderr, "was there at boot") {
		t.Fatalf("detaching a boot-time device: %+v", r)
	}
	e.MustRF("block-detach", "hot", "xvdb")
	off = len(c.Output())
	c.Send(has64 + " && echo present-$((4*11)) || echo absent-$((4*11))")
	c.WaitFor("-44", off, 20*time.Second)
	if got := c.Output()[off:]; !strings.Contains(got, "absent-44") {
		t.Fatalf("the disk is still in the guest after detach:\n%s", got)
	}
	if l := list(); len(l) != 1 {
		t.Fatalf("after detach: %+v", l)
	}

	// The CD-ROM: insert, see it in QEMU, eject.
	e.MustRF("cd-insert", "hot", "hdc", iso)
	if l := list(); !l[0].Inserted || !l[0].ReadOnly || l[0].Target != iso {
		t.Fatalf("after cd-insert: %+v", l)
	}
	if r := e.RF("cd-insert", "hot", "xvda", iso); r.Code == 0 || !strings.Contains(r.Stderr, "no CD-ROM drive xvda") {
		t.Fatalf("cd-insert into a non-CD: %+v", r)
	}
	if r := e.RF("cd-insert", "hot", "hdc", "/nonexistent.iso"); r.Code == 0 || !strings.Contains(r.Stderr, "no such file") {
		t.Fatalf("cd-insert of a missing file: %+v", r)
	}
	e.MustRF("cd-eject", "hot", "hdc")
	if l := list(); l[0].Inserted || l[0].Target != "" {
		t.Fatalf("after cd-eject: %+v", l)
	}
}

// TestCloneStopped: a domain kept after shutdown is cloned from its
// disk as it was; the clone boots and sees the source's last write.
func TestCloneStopped(t *testing.T) {
	e := NewEnv(t)
	disk := filepath.Join(e.Dir, "old.img")
	mustRun(t, "cp", "--sparse=always", imgPaths.Disk, disk)
	c := e.Boot("old", "disk = [ 'file:"+disk+",xvda,w' ]\non_poweroff = \"preserve\"")
	c.WaitFor("/dev/vda mounted on /mnt", 0, 10*time.Second)
	c.Send("echo last-words > /mnt/note; sync; echo ok-$((2*21))")
	c.WaitFor("ok-42", 0, 10*time.Second)
	e.MustRF("shutdown", "-w", "--timeout", "60", "old")
	if d := e.Domain("old"); d.PID != 0 {
		t.Fatalf("old still runs: %+v", d)
	}
	e.MustRF("clone", "old", "young")
	if got := e.Domain("old").Spec.Disks[0].Target; got == disk {
		t.Fatal("the stopped source still names the image its clone is built on")
	}
	c2 := e.Console("young")
	c2.WaitFor(image.ReadyLine, 0, 90*time.Second)
	off := len(c2.Output())
	c2.Send("cat /mnt/note")
	c2.WaitFor("last-words", off, 10*time.Second)
}
