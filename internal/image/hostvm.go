package image

// The host VM: a Debian 12 machine to install Ringfence into and test it
// as a real host has it, with systemd as PID 1 on the pure cgroup v2
// (unified) hierarchy, Debian 12's default, which the build host (cgroup
// v1 hybrid, no systemd) cannot give. It runs under QEMU (TCG) and its
// guests under a nested QEMU, so it carries what a Ringfence host needs:
// QEMU, qemu-img, iproute2, nftables, busybox-static, e2fsprogs.
//
// It is driven through serial ports, not ssh: ttyS0 is the kernel's and
// systemd's console (root can log in with HostVMRootPassword), ttyS1 a
// root shell logged in automatically (a getty override), for a program
// to type into. Built like the Debian image (debootstrap, cached by
// recipe); its root filesystem has room for a .deb, guest images and
// Ringfence's state.

import (
	"fmt"
	"io"
	"strings"
)

// What the host VM is made of, exported for the tests that boot it.
const (
	HostVMHostname     = "rf-hostvm"
	HostVMRootPassword = "ringfence"
	// HostVMCmdline is the kernel command line it boots with: root is
	// the first virtio disk, ttyS0 the console.
	HostVMCmdline = "root=/dev/vda rw console=ttyS0,115200"
	// HostVMShellTTY is the serial port with the automatic root shell
	// (QEMU's second -serial).
	HostVMShellTTY = "ttyS1"
	// HostVMDefaultDir is where BuildHostVM keeps the image by default.
	HostVMDefaultDir = "/var/lib/ringfence/images/hostvm"
	// hostVMMinSize is the root filesystem's size (sparse): room for the
	// .deb, a guest image and state on top of the system.
	hostVMMinSize = 3 << 30
)

// hostVMVersion is bumped whenever the build steps change in a way the
// recipe below does not already capture.
const hostVMVersion = "1"

// hostVMPackages are added to debootstrap's minbase, without recommends
// (debootstrap never installs them): systemd and what a Ringfence host
// needs (scripts/deps.sh's runtime set).
var hostVMPackages = []string{
	"systemd-sysv", "udev", "dbus",
	"linux-image-cloud-amd64", "initramfs-tools",
	"qemu-system-x86", "qemu-utils", "iproute2", "procps", "e2fsprogs",
	"busybox-static", "nftables", "zstd",
}

// hostVMModules must be in the initramfs: root is on a virtio disk.
var hostVMModules = []string{"virtio_pci", "virtio_blk", "ext4"}

// hostVMFiles are written into the root tree after debootstrap, path ->
// content. Part of the recipe.
func hostVMFiles() map[string]string {
	return map[string]string{
		"/etc/hostname": HostVMHostname + "\n",
		"/etc/hosts": "127.0.0.1\tlocalhost\n127.0.1.1\t" + HostVMHostname + "\n" +
			"::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
		"/etc/fstab": "# <file system> <mount point> <type> <options> <dump> <pass>\n" +
			"/dev/vda / ext4 defaults 0 1\n",
		// The shell port: root logged in, no password. %I is ttyS1.
		"/etc/systemd/system/serial-getty@" + HostVMShellTTY + ".service.d/autologin.conf": "[Service]\n" +
			"ExecStart=\n" +
			"ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %I $TERM\n",
		// No pager, colours or motd in a shell a program reads.
		"/root/.hushlogin":            "",
		"/etc/profile.d/zz-hostvm.sh": "export SYSTEMD_PAGER= SYSTEMD_COLORS=0 PAGER=cat\n",
		// The journal survives the reboots the tests make.
		"/etc/systemd/journald.conf.d/hostvm.conf": "[Journal]\nStorage=persistent\n",
		"/etc/initramfs-tools/modules":             strings.Join(hostVMModules, "\n") + "\n",
		// Every copy makes its own id on first boot, as in the Debian
		// image.
		"/etc/machine-id": "",
	}
}

// hostVMUnits are enabled: the shell's getty (the kernel console's one
// is started by systemd's generator from console=ttyS0).
var hostVMUnits = []string{"serial-getty@" + HostVMShellTTY + ".service"}

var hostVMPrune = []string{
	"/var/lib/apt/lists", "/var/cache/apt", "/etc/resolv.conf", "/var/cache/debconf/templates.dat-old",
	"/var/cache/debconf/config.dat-old", "/var/lib/dbus/machine-id",
}

// HostVMPaths are the files of a built host VM image; Root is booted as
// /dev/vda.
type HostVMPaths = BootImage

// hostVMTree is the host VM image's recipe.
func hostVMTree() treeRecipe {
	return treeRecipe{
		what: "the host VM image", tag: "hostvm ", version: hostVMVersion,
		packages: hostVMPackages, modules: hostVMModules, units: hostVMUnits, prune: hostVMPrune,
		rootPassword: HostVMRootPassword, files: hostVMFiles(), label: "rf-hostvm-root", minSize: hostVMMinSize,
		configuring: "hostname, root password, fstab, autologin shell on " + HostVMShellTTY + ", initramfs modules",
		check:       checkUnifiedCgroups, quiet: true,
	}
}

// HostVMPathsIn returns where the host VM image lives in dir.
func HostVMPathsIn(dir string) HostVMPaths { return bootImageIn(dir, hostVMTree().hash()) }

// BuildHostVM makes the host VM image in dir (HostVMDefaultDir if empty)
// unless it is already built by this recipe, and returns its paths. It
// needs root, network access to deb.debian.org, debootstrap and
// mkfs.ext4. It is quiet: log gets one line per step, and debootstrap's
// output only in the error of a failed build (log nil: discarded).
// Caching, locking and the scratch directory are BuildDebian's.
func BuildHostVM(dir string, log io.Writer) (HostVMPaths, error) {
	if dir == "" {
		dir = HostVMDefaultDir
	}
	return buildBootImage(hostVMTree(), dir, log)
}

// checkUnifiedCgroups: pure cgroup v2 is systemd 252's default; make sure
// this build of it says so rather than trusting it (the test checks the
// booted VM too).
func checkUnifiedCgroups(root string) error {
	ver, err := chrootOutput(root, "", "", "systemctl", "--version")
	if err != nil {
		return err
	}
	if !strings.Contains(ver, "default-hierarchy=unified") {
		return fmt.Errorf("the VM's systemd does not default to the unified cgroup hierarchy (cgroup v2):\n%s", ver)
	}
	return nil
}
