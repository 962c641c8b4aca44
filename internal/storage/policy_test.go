package storage

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The block-device rules against a fixture sysfs and mount table: a
// mounted disk, a disk whose partition is mounted, a disk under an LVM
// volume that is mounted, a disk used as swap, a loop device on a refused
// file; a free disk passes.
func TestPolicyBlockDevices(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for mknod")
	}
	dir := t.TempDir()
	sys := filepath.Join(dir, "sys")
	node := func(name string, major, minor uint32) string {
		p := filepath.Join(dir, name)
		if err := unix.Mknod(p, unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor))); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write := func(rel, body string) {
		p := filepath.Join(sys, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(body), 0o644)
	}
	// 250:0 mounted itself; 250:16 has partition 250:17 mounted; 250:32
	// holds dm-0 (251:0) which is mounted; 250:48 free; 250:64 swap;
	// 7:5 a loop device on /etc/passwd.
	write("250:16/sdb1/partition", "1")
	write("250:16/sdb1/dev", "250:17")
	write("250:32/holders/dm-0/dev", "251:0")
	write("7:5/loop/backing_file", "/etc/passwd\n")
	mounts := filepath.Join(dir, "mountinfo")
	os.WriteFile(mounts, []byte(
		"22 1 250:0 / /srv rw - ext4 /dev/sda rw\n"+
			"23 1 250:17 / /data rw - ext4 /dev/sdb1 rw\n"+
			"24 1 251:0 / /var/lib/mysql rw - xfs /dev/mapper/vg-db rw\n"), 0o644)
	swap := node("swapdev", 250, 64)
	swaps := filepath.Join(dir, "swaps")
	os.WriteFile(swaps, []byte("Filename Type Size Used Priority\n"+swap+" partition 1 0 -2\n"), 0o644)
	p := &Policy{SysBlock: sys, MountInfo: mounts, Swaps: swaps}
	for _, tc := range []struct {
		name         string
		major, minor uint32
		want         string
	}{
		{"sda", 250, 0, "mounted on /srv"},
		{"sdb", 250, 16, "holds /dev/sdb1, which is mounted on /data"},
		{"sdc", 250, 32, "holds /dev/dm-0, which is mounted on /var/lib/mysql"},
		{"sdd", 250, 48, ""},
		{"loop5", 7, 5, "inside /etc"},
	} {
		err := p.checkDisk(node(tc.name, tc.major, tc.minor))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := p.checkDisk(swap); err == nil || !strings.Contains(err.Error(), "mounted on swap") {
		t.Errorf("swap device: %v", err)
	}
}

// checkDisk applies the block-device rules alone (the fixture nodes are
// not real devices: opening them for the lock test would fail).
func (p *Policy) checkDisk(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return p.checkBlock(path, path, fi, UseDisk)
}

// The file rules: system trees, Ringfence's own dirs except its image
// dirs and pools, roots.
func TestPolicyFiles(t *testing.T) {
	dir := t.TempDir()
	state, run := filepath.Join(dir, "state"), filepath.Join(dir, "run")
	for _, d := range []string{state + "/images", state + "/imports", run, dir + "/pool", dir + "/free", dir + "/root"} {
		os.MkdirAll(d, 0o700)
	}
	touch := func(p string) string { os.WriteFile(p, nil, 0o600); return p }
	p := &Policy{StateDir: state, RunDir: run, Managed: []string{state + "/images", state + "/imports"}, Pools: func() []string { return []string{dir + "/pool"} }}
	link := filepath.Join(dir, "free", "sneaky")
	os.Symlink(touch(state+"/state.db"), link)
	for _, tc := range []struct {
		use  Use
		path string
		want string
	}{
		{UseDisk, "/etc/shadow", "inside /etc"},
		{UseDisk, "/proc/self/mem", "inside /proc"},
		{UseBoot, "/boot/vmlinuz-x", ""},
		{UseNew, "/boot/new.img", "/boot holds"},
		{UseDisk, touch(state + "/state.db"), "own state"},
		{UseDisk, link, "own state"},
		{UseDisk, touch(state + "/images/a.img"), ""},
		{UseDisk, touch(run + "/x"), "run dir"},
		{UseDisk, touch(dir + "/pool/v.img"), ""},
		{UseDisk, touch(dir + "/free/d.img"), ""},
		{UsePool, "/", "whole host"},
		{UsePool, dir, "contains Ringfence's own state dir"},
		{UseNew, dir + "/free/new/deeper/x.img", ""},
		{UseDisk, "relative.img", "absolute"},
	} {
		err := p.Check(tc.use, tc.path)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s %s: %v, want %q", tc.use, tc.path, err, tc.want)
		}
	}
	p.Roots = []string{dir + "/root"}
	if err := p.Check(UseDisk, touch(dir+"/free/d.img")); err == nil || !strings.Contains(err.Error(), "--disk-roots") {
		t.Errorf("outside roots: %v", err)
	}
	if err := p.Check(UseDisk, touch(dir+"/root/d.img")); err != nil {
		t.Errorf("inside roots: %v", err)
	}
	if err := p.Check(UseDisk, touch(state+"/images/b.img")); err != nil {
		t.Errorf("Ringfence's image dir with roots set: %v", err)
	}
}

// An image's header names files QEMU would open as root: each is judged
// like a disk; network targets and loops are refused; a raw disk that
// merely starts like qcow2 is read raw and names nothing.
func TestBackingChain(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	dir := t.TempDir()
	img := func(args ...string) {
		if out, err := exec.Command("qemu-img", append([]string{"create", "-q"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
		}
	}
	base := filepath.Join(dir, "base.img")
	img("-f", "raw", base, "1M")
	mid := filepath.Join(dir, "mid.qcow2")
	img("-f", "qcow2", "-F", "raw", "-b", base, mid)
	top := filepath.Join(dir, "top.qcow2")
	img("-f", "qcow2", "-F", "qcow2", "-b", "mid.qcow2", top) // relative, as Xen-era images have
	chain, err := BackingChain(top, "qcow2")
	if err != nil || len(chain) != 2 || chain[0].Path != mid || chain[1].Path != base {
		t.Fatalf("chain %+v %v", chain, err)
	}
	evil := filepath.Join(dir, "evil.qcow2")
	img("-f", "qcow2", "-u", "-F", "raw", "-b", "/etc/shadow", evil, "1M")
	p := &Policy{StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run")}
	if err := p.CheckImage(Local, UseDisk, evil, "qcow2"); err == nil || !strings.Contains(err.Error(), "its backing file /etc/shadow") {
		t.Fatalf("a backing file in /etc: %v", err)
	}
	// The same bytes called raw: QEMU reads them raw, nothing is opened.
	if err := p.CheckImage(Local, UseDisk, evil, "raw"); err != nil {
		t.Fatalf("a raw disk starting like qcow2: %v", err)
	}
	nbd := filepath.Join(dir, "nbd.qcow2")
	img("-f", "qcow2", "-u", "-F", "raw", "-b", "nbd://10.0.0.1/x", nbd, "1M")
	if _, err := BackingChain(nbd, "qcow2"); err == nil || !strings.Contains(err.Error(), "network or protocol") {
		t.Fatalf("a network backing file: %v", err)
	}
	data := filepath.Join(dir, "data.qcow2")
	os.MkdirAll(filepath.Join(dir, "state"), 0o700)
	img("-f", "qcow2", "-o", "data_file="+filepath.Join(dir, "state", "state.db"), data, "1M")
	if err := p.CheckImage(Local, UseDisk, data, "qcow2"); err == nil || !strings.Contains(err.Error(), "its data file") {
		t.Fatalf("a data file in the state dir: %v", err)
	}
	loopA, loopB := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.qcow2")
	img("-f", "qcow2", "-u", "-F", "qcow2", "-b", loopB, loopA, "1M")
	img("-f", "qcow2", "-u", "-F", "qcow2", "-b", loopA, loopB, "1M")
	if _, err := BackingChain(loopA, "qcow2"); err == nil || !strings.Contains(err.Error(), "loops") {
		t.Fatalf("a loop: %v", err)
	}
	// From a peer, only declared guest storage.
	if err := p.CheckImage(FromPeer, UseDisk, base, "raw"); err == nil || !strings.Contains(err.Error(), "a migrating host may name only") {
		t.Fatalf("a peer naming a file on undeclared storage: %v", err)
	}
	p.Pools = func() []string { return []string{dir} }
	if err := p.CheckImage(FromPeer, UseDisk, base, "raw"); err != nil {
		t.Fatalf("a peer naming a file in a pool: %v", err)
	}
}
