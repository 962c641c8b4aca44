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
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ringfence/ringfence/internal/procfs"
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

// DebianPaths are the files of a built Debian image; Root is the guest's
// xvda1.
type DebianPaths = BootImage

// debianTree is the Debian image's recipe.
func debianTree() treeRecipe {
	return treeRecipe{
		what: "the Debian image", version: debianVersion,
		packages: debianPackages, modules: debianModules, units: debianUnits, prune: debianPrune,
		rootPassword: DebianRootPassword, files: debianFiles(), label: "debian12-root",
		configuring: "hostname, root password, fstab, networkd, lighttpd, initramfs modules",
	}
}

// DebianPathsIn returns where the Debian image lives in dir.
func DebianPathsIn(dir string) DebianPaths { return bootImageIn(dir, debianRecipe()) }

// debianRecipe hashes everything the image is made from.
func debianRecipe() string { return debianTree().hash() }

// BuildDebian makes the Debian image in dir unless it is already built by
// this recipe, and returns its paths. It needs root, network access to
// deb.debian.org, debootstrap and mkfs.ext4. log gets one line per step and
// debootstrap's output (nil: discarded). Concurrent callers wait for one
// build (a lock file in dir). The work is done in a scratch directory in
// dir and the finished files are renamed into place, the recipe last: a
// failed or interrupted build leaves the old files, or none that Built
// accepts, and no rootfs tree.
func BuildDebian(dir string, log io.Writer) (DebianPaths, error) {
	return buildBootImage(debianTree(), dir, log)
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
	ms, err := procfs.Mountinfo("")
	if err != nil {
		return err
	}
	var mounts []string
	for _, m := range ms {
		if m.Point == abs || strings.HasPrefix(m.Point, abs+"/") {
			mounts = append(mounts, m.Point)
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
