package image

// The Debian image: a small but real Debian 12 (bookworm) server for tests
// and benchmarks that need a whole distribution (systemd, udev, a DHCP
// client, a web server, a login on the serial console) rather than the
// busybox default guest. It is laid out as a Xen PV admin would have it:
// the guest's own kernel and initramfs copied out of its /boot, and a root
// filesystem image with no partition table, meant for xvda1.
//
// Building takes minutes (debootstrap from deb.debian.org), so the result
// is cached in a directory and rebuilt only when the recipe below changes.

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// What the Debian guest is made of, exported for the tests that boot it.
const (
	DebianHostname     = "debian12"
	DebianRootPassword = "ringfence"
	// DebianIndexLine is the whole of / served by lighttpd on port 80.
	DebianIndexLine = "ringfence-real-guest"
)

// debianVersion is bumped whenever the build steps change in a way the
// recipe below does not already capture.
const debianVersion = "1"

const (
	debianSuite  = "bookworm"
	debianMirror = "http://deb.debian.org/debian"
)

// debianPackages are added to debootstrap's minbase (Priority: required
// plus apt), without recommends. dbus is there because systemd-logind
// fails without a system bus, which leaves the system degraded.
var debianPackages = []string{
	"systemd-sysv", "udev", "dbus",
	"linux-image-cloud-amd64", "initramfs-tools",
	"lighttpd", "iproute2", "procps",
}

// debianModules must be in the initramfs: the guest's root is on a virtio
// disk and its network on virtio-net.
var debianModules = []string{"virtio_pci", "virtio_blk", "virtio_net", "ext4"}

// debianFiles are written into the root tree after debootstrap, path ->
// content. Part of the recipe.
func debianFiles() map[string]string {
	return map[string]string{
		"/etc/hostname": DebianHostname + "\n",
		"/etc/hosts": "127.0.0.1\tlocalhost\n127.0.1.1\t" + DebianHostname + "\n" +
			"::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
		// As on a Xen PV guest. Under KVM the disk is /dev/vda and no
		// /dev/xvda1 exists: systemd does not wait for the device of
		// the root entry (it is already mounted), remount-fs only
		// applies its options, and fsck-root checks the device / is
		// on. Checked by booting the image under QEMU with root=/dev/vda:
		// no wait, no emergency mode, system "running".
		"/etc/fstab": "# <file system> <mount point> <type> <options> <dump> <pass>\n" +
			"/dev/xvda1 / ext4 defaults 0 1\n",
		// DHCP on every Ethernet interface. The client identifier is
		// the MAC, not the DUID derived from /etc/machine-id, so copies
		// of one image never ask for the same lease.
		"/etc/systemd/network/20-dhcp.network": "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n\n" +
			"[DHCPv4]\nClientIdentifier=mac\n",
		"/var/www/html/index.html":     DebianIndexLine + "\n",
		"/etc/initramfs-tools/modules": strings.Join(debianModules, "\n") + "\n",
		// Empty, as Debian's cloud images ship it: every copy of the
		// image makes its own id on first boot (an empty file is not
		// "first boot", so systemd-firstboot never prompts).
		"/etc/machine-id": "",
	}
}

// debianUnits are enabled in the guest. serial-getty@ttyS0 needs nothing:
// systemd's getty generator starts it when console=ttyS0 is on the
// command line, which Ringfence always puts there.
var debianUnits = []string{"systemd-networkd.service", "lighttpd.service"}

// Left out of the root filesystem: apt's lists and caches (apt-get update
// brings them back), what debootstrap copied from the host, and D-Bus's
// copy of the build's machine id (it falls back to /etc/machine-id).
var debianPrune = []string{
	"/var/lib/apt/lists", "/var/cache/apt", "/etc/resolv.conf", "/var/cache/debconf/templates.dat-old",
	"/var/cache/debconf/config.dat-old", "/var/lib/dbus/machine-id",
}

// DebianPaths are the files of a built Debian image.
type DebianPaths struct {
	Dir    string
	Kernel string // the guest's /boot/vmlinuz-*
	Initrd string // the guest's /boot/initrd.img-*
	Root   string // raw ext4, no partition table: the whole file is xvda1
	Recipe string // hash of what the image was made from
}

// DebianPathsIn returns where the Debian image lives in dir.
func DebianPathsIn(dir string) DebianPaths {
	return DebianPaths{Dir: dir, Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"),
		Root: filepath.Join(dir, "root.img"), Recipe: filepath.Join(dir, "RECIPE")}
}

// debianRecipe hashes everything the image is made from.
func debianRecipe() string {
	h := sha256.New()
	fmt.Fprintf(h, "version %s\nsuite %s\nmirror %s\nvariant minbase\n", debianVersion, debianSuite, debianMirror)
	fmt.Fprintf(h, "packages %s\nmodules %s\nunits %s\nprune %s\nroot password %s\nsize used+30%% /64MiB\n",
		strings.Join(debianPackages, ","), strings.Join(debianModules, ","), strings.Join(debianUnits, ","),
		strings.Join(debianPrune, ","), DebianRootPassword)
	files := debianFiles()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "file %s %d\n%s", n, len(files[n]), files[n])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Built reports whether every file is there and made by this recipe.
func (p DebianPaths) Built() bool {
	for _, f := range []string{p.Kernel, p.Initrd, p.Root} {
		if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			return false
		}
	}
	b, err := os.ReadFile(p.Recipe)
	return err == nil && strings.TrimSpace(string(b)) == debianRecipe()
}

// BuildDebian makes the Debian image in dir unless it is already built by
// this recipe, and returns its paths. It needs root, network access to
// deb.debian.org, debootstrap and mkfs.ext4. log gets one line per step and
// debootstrap's output (nil: discarded). Concurrent callers wait for one
// build (a lock file in dir). The work is done in a scratch directory in
// dir and the finished files are renamed into place, the recipe last: a
// failed or interrupted build leaves the old files, or none that Built
// accepts, and no rootfs tree.
func BuildDebian(dir string, log io.Writer) (DebianPaths, error) {
	if log == nil {
		log = io.Discard
	}
	p := DebianPathsIn(dir)
	if p.Built() {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return p, errors.New("building the Debian image needs root (debootstrap, chroot)")
	}
	for _, tool := range []string{"debootstrap", "mkfs.ext4", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			return p, fmt.Errorf("%s not found: apt-get install debootstrap e2fsprogs (make deps)", tool)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return p, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return p, err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return p, fmt.Errorf("locking %s: %w", dir, err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	if p.Built() { // another process built it while we waited
		return p, nil
	}
	// Scratch left by an interrupted build.
	old, _ := filepath.Glob(filepath.Join(dir, ".build-*"))
	for _, o := range old {
		if err := removeScratch(o); err != nil {
			return p, err
		}
	}
	scratch, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return p, err
	}
	defer func() {
		if err := removeScratch(scratch); err != nil {
			fmt.Fprintf(log, "==> warning: %v\n", err)
		}
	}()
	start := time.Now()
	out, err := buildDebianIn(scratch, log)
	if err != nil {
		return p, err
	}
	// Into place: the old recipe goes first and the new one comes last,
	// so the directory never holds a recipe with files it does not
	// describe.
	if err := os.Remove(p.Recipe); err != nil && !errors.Is(err, os.ErrNotExist) {
		return p, err
	}
	for _, mv := range [][2]string{{out.Kernel, p.Kernel}, {out.Initrd, p.Initrd}, {out.Root, p.Root}, {out.Recipe, p.Recipe}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			return p, err
		}
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	fmt.Fprintf(log, "==> Debian image ready in %s (%s)\n", dir, time.Since(start).Round(time.Second))
	return p, nil
}

// buildDebianIn does the work in scratch and returns the finished files,
// still in scratch.
func buildDebianIn(scratch string, log io.Writer) (DebianPaths, error) {
	out := DebianPathsIn(scratch)
	root := filepath.Join(scratch, "rootfs")

	fmt.Fprintf(log, "==> debootstrap --variant=minbase %s (%s)\n", debianSuite, strings.Join(debianPackages, " "))
	cmd := exec.Command("debootstrap", "--variant=minbase", "--components=main",
		"--include="+strings.Join(debianPackages, ","), debianSuite, root, debianMirror)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8")
	if err := cmd.Run(); err != nil {
		return out, fmt.Errorf("debootstrap: %v (its log: %s)", err, filepath.Join(root, "debootstrap", "debootstrap.log"))
	}

	fmt.Fprintln(log, "==> configuring: hostname, root password, fstab, networkd, lighttpd, initramfs modules")
	files := debianFiles()
	for name, content := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return out, err
		}
		os.Remove(path) // may be a symlink into the host, like resolv.conf
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return out, err
		}
	}
	if err := chroot(root, DebianRootPassword, "root:"+DebianRootPassword+"\n", "chpasswd"); err != nil {
		return out, err
	}
	if err := chroot(root, "", "", append([]string{"systemctl", "enable"}, debianUnits...)...); err != nil {
		return out, err
	}

	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		return out, fmt.Errorf("expected one kernel in the guest's /boot, found %d", len(kernels))
	}
	kver := strings.TrimPrefix(filepath.Base(kernels[0]), "vmlinuz-")
	fmt.Fprintf(log, "==> update-initramfs -u -k %s\n", kver)
	if err := chroot(root, "", "", "update-initramfs", "-u", "-k", kver); err != nil {
		return out, err
	}
	initrd := filepath.Join(root, "boot", "initrd.img-"+kver)
	if err := checkInitramfs(root, kver, log); err != nil {
		return out, err
	}

	for _, pr := range debianPrune {
		if err := os.RemoveAll(filepath.Join(root, pr)); err != nil {
			return out, err
		}
	}
	// apt expects these to exist.
	os.MkdirAll(filepath.Join(root, "var/lib/apt/lists/partial"), 0o755)
	os.MkdirAll(filepath.Join(root, "var/cache/apt/archives/partial"), 0o755)
	if pids, err := exec.Command("pgrep", "-f", root).Output(); err == nil && len(pids) > 0 {
		return out, fmt.Errorf("processes started in the guest tree are still running: %s", strings.Fields(string(pids)))
	}

	if err := copyFile(kernels[0], out.Kernel); err != nil {
		return out, err
	}
	if err := copyFile(initrd, out.Initrd); err != nil {
		return out, err
	}

	used, nfiles, err := treeUsage(root)
	if err != nil {
		return out, err
	}
	size := roundUp(used+used*3/10, 64<<20)
	inodes := size / 16384
	if need := nfiles * 13 / 10; need > inodes {
		inodes = need
	}
	fmt.Fprintf(log, "==> mkfs.ext4 -d: %d MiB used, %d files -> %d MiB root filesystem\n", used>>20, nfiles, size>>20)
	f, err := os.Create(out.Root)
	if err != nil {
		return out, err
	}
	err = f.Truncate(size) // sparse: mkfs writes only what it fills
	f.Close()
	if err != nil {
		return out, err
	}
	mk := exec.Command("mkfs.ext4", "-q", "-F", "-T", "default", "-b", "4096", "-N", strconv.FormatInt(inodes, 10),
		"-L", "debian12-root", "-E", "root_owner=0:0", "-d", root, out.Root)
	if b, err := mk.CombinedOutput(); err != nil {
		return out, fmt.Errorf("mkfs.ext4: %v: %s", err, b)
	}
	if b, err := exec.Command("e2fsck", "-fn", out.Root).CombinedOutput(); err != nil {
		return out, fmt.Errorf("e2fsck on the new root filesystem: %v: %s", err, b)
	}
	if err := syncFile(out.Root); err != nil {
		return out, err
	}
	if err := writeAtomic(out.Recipe, []byte(debianRecipe()+"\n"), 0o644); err != nil {
		return out, err
	}
	return out, nil
}

// chroot runs a command in root with stdin; secret, if set, is kept out
// of error messages.
func chroot(root, secret, stdin string, args ...string) error {
	cmd := exec.Command("chroot", append([]string{root}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive", "HOME=/root"}
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	b, err := cmd.CombinedOutput()
	if err != nil {
		msg := string(b)
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "***")
		}
		return fmt.Errorf("chroot %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(msg))
	}
	return nil
}

// checkInitramfs makes sure the guest's initramfs can mount a virtio root
// and bring up virtio-net: every module in debianModules is in it or
// built into the kernel.
func checkInitramfs(root, kver string, log io.Writer) error {
	cmd := exec.Command("chroot", root, "lsinitramfs", "/boot/initrd.img-"+kver)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8"}
	listing, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("lsinitramfs: %v", err)
	}
	builtin, _ := os.ReadFile(filepath.Join(root, "lib", "modules", kver, "modules.builtin"))
	has := func(text []byte, m string) bool {
		sc := bufio.NewScanner(strings.NewReader(string(text)))
		for sc.Scan() {
			base := filepath.Base(sc.Text())
			if i := strings.Index(base, ".ko"); i > 0 && strings.ReplaceAll(base[:i], "-", "_") == m {
				return true
			}
		}
		return false
	}
	var report []string
	for _, m := range debianModules {
		switch {
		case has(listing, m):
			report = append(report, m+" (initramfs)")
		case has(builtin, m):
			report = append(report, m+" (built in)")
		default:
			return fmt.Errorf("the guest's initramfs lacks %s", m)
		}
	}
	fmt.Fprintf(log, "==> initramfs has %s\n", strings.Join(report, ", "))
	return nil
}

// treeUsage returns the bytes allocated to a tree (hard links once) and
// its number of inodes.
func treeUsage(root string) (int64, int64, error) {
	type key struct{ dev, ino uint64 }
	seen := map[key]bool{}
	var used, n int64
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		k := key{uint64(st.Dev), st.Ino}
		if seen[k] {
			return nil
		}
		seen[k] = true
		n++
		// At least one 4 KiB block for anything with data, as in ext4
		// (short symlinks live in the inode).
		b := st.Blocks * 512
		if fi.Mode().IsRegular() && fi.Size() > 0 && b < 4096 {
			b = 4096
		}
		used += b
		return nil
	})
	return used, n, err
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	o, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(o, in); err != nil {
		o.Close()
		return err
	}
	if err := o.Sync(); err != nil {
		o.Close()
		return err
	}
	return o.Close()
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// removeScratch removes a build directory, after making sure nothing is
// mounted under it (debootstrap mounts /proc and /sys in its target and a
// killed debootstrap may leave them).
func removeScratch(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var mounts []string
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == abs || strings.HasPrefix(mp, abs+"/") {
			mounts = append(mounts, mp)
		}
	}
	// Deepest first.
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, mp := range mounts {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("not removing %s: %s is mounted and unmounting failed: %v", dir, mp, err)
		}
	}
	return os.RemoveAll(dir)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
