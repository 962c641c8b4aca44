package image

// Cloud images (`ringfence image build debian-12`): a Debian 12 server
// that configures itself at first boot from a cloud-init NoCloud seed
// (hostname, SSH keys, password, address) and answers the QEMU guest
// agent. One disk with an MBR and one ext4 partition, GRUB in the MBR gap
// (SeaBIOS boots it), the kernel and initramfs also kept beside the
// template for direct kernel boot. The template is a qcow2 volume of a
// pool (storage.ImageFilesIn); new domains are thin clones of it, grown
// to their size, and cloud-init grows the partition and filesystem at
// first boot (growpart, resize2fs).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/storage"
)

// cloudVersion is bumped whenever the steps below change in a way the
// recipe does not already capture.
const cloudVersion = "1"

// CloudImages are the images `image build` knows, by name.
var CloudImages = []string{"debian-12"}

// DefaultCloudSize is a template's virtual size unless --size says.
const DefaultCloudSize = 4 << 30

// cloudRootDevice is the root filesystem in a guest whose first disk is a
// clone: the first partition of the first virtio disk.
const cloudRootDevice = "/dev/vda1"

// CloudCmdline boots a cloud image; GRUB's menu entry says the same.
// The serial console is last so it is /dev/console (cloud-init and
// systemd write there; Ringfence's console is ttyS0).
const CloudCmdline = "root=" + cloudRootDevice + " ro console=tty0 console=ttyS0,115200"

// cloudPackages are added to debootstrap's minbase, without recommends.
// grub-pc-bin, not grub-pc: grub-pc's maintainer scripts install GRUB
// onto a device, which a template being written into a file has not;
// the build writes boot.img and core.img itself (writeBootSector).
// fdisk for growpart; systemd-resolved takes the DNS servers
// cloud-init's networkd configuration names.
var cloudPackages = []string{
	"systemd-sysv", "udev", "dbus", "systemd-resolved",
	"linux-image-cloud-amd64", "initramfs-tools", "grub-pc-bin",
	"cloud-init", "cloud-guest-utils", "fdisk", "e2fsprogs",
	// debootstrap does not resolve virtual packages: python3-cryptography
	// (for cloud-init) needs what this one provides.
	"python3-cffi-backend",
	"qemu-guest-agent", "openssh-server", "iproute2", "procps",
}

var cloudModules = []string{"virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "ext4"}

// cloudFiles are written into the tree after debootstrap.
func cloudFiles() map[string]string {
	return map[string]string{
		"/etc/fstab": "# <file system> <mount point> <type> <options> <dump> <pass>\n" +
			cloudRootDevice + " / ext4 defaults,errors=remount-ro 0 1\n",
		// NoCloud only: without this, cloud-init probes for network
		// metadata services for minutes before giving up.
		// systemd-networkd renders the network configuration.
		"/etc/cloud/cloud.cfg.d/90-ringfence.cfg": "datasource_list: [ NoCloud, None ]\n" +
			"system_info:\n  network:\n    renderers: [ networkd ]\n",
		"/etc/initramfs-tools/modules": strings.Join(cloudModules, "\n") + "\n",
		"/boot/grub/grub.cfg": "set timeout=1\n" +
			"serial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial\n" +
			"menuentry 'Debian GNU/Linux 12' {\n\tlinux /vmlinuz " + CloudCmdline + "\n\tinitrd /initrd.img\n}\n",
		// Every clone makes its own machine id on first boot.
		"/etc/machine-id": "",
		// The seeds' noop advice: the disk is a file on the host, whose
		// own I/O scheduler orders the real I/O, so the guest's queues
		// pass requests straight through. virtio-blk reports itself
		// rotational and Debian picks mq-deadline for it by default
		// (docs/provisioning.md shows both).
		"/etc/udev/rules.d/60-ringfence-virtio-disks.rules": `ACTION=="add|change", SUBSYSTEM=="block", KERNEL=="vd[a-z]*", ENV{DEVTYPE}=="disk", ` +
			`ATTR{queue/rotational}="0", ATTR{queue/scheduler}="none"` + "\n",
		// Freezes and thaws (snapshots, exports, live clones) are noted
		// in the journal: Debian's hook runs the scripts of
		// fsfreeze-hook.d with "freeze" or "thaw".
		"/etc/systemd/system/qemu-guest-agent.service.d/fsfreeze-hook.conf": "[Service]\nExecStart=\n" +
			"ExecStart=/usr/sbin/qemu-ga --fsfreeze-hook\n",
		cloudFreezeHook: "#!/bin/sh\nlogger -t fsfreeze-hook \"filesystems: $1\"\n",
		// Online once any interface is (a guest whose second NIC is not
		// configured yet must not stall cloud-init, which waits for
		// this, for the default 2 minutes).
		"/etc/systemd/system/systemd-networkd-wait-online.service.d/any.conf": "[Service]\nExecStart=\n" +
			"ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=30\n",
	}
}

// cloudFreezeHook is made executable.
const cloudFreezeHook = "/etc/qemu/fsfreeze-hook.d/ringfence-journal"

var cloudUnits = []string{"systemd-networkd.service", "systemd-resolved.service"}

// cloudPrune: as the Debian image, and the SSH host keys, which every
// clone would otherwise share (cloud-init makes new ones at first boot).
var cloudPrune = []string{
	"/var/lib/apt/lists", "/var/cache/apt", "/var/cache/debconf/templates.dat-old",
	"/var/cache/debconf/config.dat-old", "/var/lib/dbus/machine-id",
	"/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_rsa_key.pub",
	"/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ecdsa_key.pub",
	"/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub",
}

// CloudBuild is one `image build`.
type CloudBuild struct {
	Name     string   // one of CloudImages
	Packages []string // added to the image's own
	SizeB    int64    // the template's virtual size (0: DefaultCloudSize)
	Pool     api.Pool // where the template and its files go
	// CacheDir keeps downloaded packages between builds ("": none).
	CacheDir string
	// Progress gets one line per step; Log debootstrap's and the
	// tools' output (nil: discarded).
	Progress func(step, of int, what string)
	Log      io.Writer
}

// cloudSteps is the number of Progress steps of a build.
const cloudSteps = 5

func (b CloudBuild) tree() treeRecipe {
	pk := append(append([]string(nil), cloudPackages...), b.Packages...)
	return treeRecipe{
		what: "image " + b.Name, tag: "cloud " + b.Name + " ", version: cloudVersion,
		packages: pk, modules: cloudModules, units: cloudUnits, prune: cloudPrune,
		files: cloudFiles(), executables: []string{cloudFreezeHook}, label: "rf-root", quiet: true, cacheDir: b.CacheDir,
		configuring: "fstab, cloud-init (NoCloud), GRUB menu, networkd, initramfs modules",
	}
}

func (b CloudBuild) size() int64 {
	if b.SizeB > 0 {
		return b.SizeB
	}
	return DefaultCloudSize
}

// Recipe hashes everything the image is made from: its name, packages,
// size and the build steps' version.
func (b CloudBuild) Recipe() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\nsize %d\nlayout mbr grub-pc core-at-1 part-at-2048 %s\n", b.tree().hash(), b.size(), CloudCmdline)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Check refuses a build that cannot be made before anything is.
func (b CloudBuild) Check() error {
	known := false
	for _, n := range CloudImages {
		known = known || n == b.Name
	}
	if !known {
		return api.Errorf(api.ErrInvalid, "unknown image %q: the images that can be built are %s", b.Name, strings.Join(CloudImages, ", "))
	}
	for _, p := range b.Packages {
		if !validPackage(p) {
			return api.Errorf(api.ErrInvalid, "--packages: %q is not a Debian package name (lower case letters, digits, + - .)", p)
		}
	}
	if b.size() < 1<<30 || b.size()%(1<<20) != 0 {
		return api.Errorf(api.ErrInvalid, "--size %d: want at least 1G, in whole MiB (e.g. 4G)", b.size())
	}
	return nil
}

func validPackage(p string) bool {
	if len(p) < 2 || len(p) > 100 || !(p[0] >= 'a' && p[0] <= 'z' || p[0] >= '0' && p[0] <= '9') {
		return false
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("+-.", c)) {
			return false
		}
	}
	return true
}

// Built returns the image if the pool holds it made by this recipe.
func (b CloudBuild) Built() (api.Image, bool) {
	im, err := storage.ReadImage(b.Pool, b.Name)
	return im, err == nil && im.Recipe == b.Recipe()
}

// Build makes the image unless the pool already holds it made by this
// recipe (then it returns at once). A rebuild is refused while clones
// stand on the old template. Cancelling ctx or a failed step leaves the
// pool as it was (the work is done in a scratch directory under the
// pool's .images, removed; the files are renamed into place at the end,
// the description last).
func (b CloudBuild) Build(ctx context.Context) (api.Image, error) {
	if err := b.Check(); err != nil {
		return api.Image{}, err
	}
	if im, ok := b.Built(); ok {
		return im, nil
	}
	if old, err := storage.ReadImage(b.Pool, b.Name); err == nil && len(old.Clones) > 0 {
		return api.Image{}, api.Errorf(api.ErrConflict, "image %s in pool %s was made by another recipe and is the template of %s: "+
			"delete those clones first, or build into another pool (--pool)", b.Name, b.Pool.Name, strings.Join(old.Clones, ", "))
	}
	if b.Log == nil {
		b.Log = io.Discard
	}
	if b.Progress == nil {
		b.Progress = func(int, int, string) {}
	}
	files := storage.ImageFilesIn(b.Pool.Dir, b.Name)
	c := cachedBuild{what: "image " + b.Name, dir: filepath.Dir(files.Meta), recipe: files.Meta,
		built: func() bool { _, ok := b.Built(); return ok }}
	start := time.Now()
	err := c.run(b.Log, func(scratch string) ([][2]string, error) {
		return b.buildIn(ctx, scratch, files, start)
	})
	if err != nil {
		return api.Image{}, fmt.Errorf("building image %s in pool %s: %w", b.Name, b.Pool.Name, err)
	}
	return storage.ReadImage(b.Pool, b.Name)
}

// buildIn does the steps in scratch; it returns the moves into place.
func (b CloudBuild) buildIn(ctx context.Context, scratch string, files storage.ImageFiles, start time.Time) ([][2]string, error) {
	r := b.tree()
	b.Progress(1, cloudSteps, "debootstrap "+debianSuite+" ("+fmt.Sprint(len(r.packages))+" packages and their dependencies)")
	t, err := r.prepareTree(ctx, scratch, b.Log)
	if err != nil {
		return nil, err
	}
	b.Progress(2, cloudSteps, "GRUB: core image and modules")
	core, err := grubFiles(t.root)
	if err != nil {
		return nil, err
	}
	osName := osRelease(t.root)
	b.Progress(3, cloudSteps, fmt.Sprintf("disk: MBR, GRUB, ext4 partition (%d MiB)", b.size()>>20))
	raw := filepath.Join(scratch, "disk.raw")
	if err := writeDisk(ctx, t.root, raw, core, b.size(), r.label); err != nil {
		return nil, err
	}
	b.Progress(4, cloudSteps, "qcow2 template")
	out := storage.ImageFilesIn(scratch, b.Name)
	if err := os.MkdirAll(filepath.Dir(out.Meta), 0o755); err != nil {
		return nil, err
	}
	if err := storage.ConvertToQcow2(ctx, raw, out.Template); err != nil {
		return nil, err
	}
	os.Remove(raw)
	b.Progress(5, cloudSteps, "kernel, initramfs and description")
	if err := copyFile(t.kernel, out.Kernel); err != nil {
		return nil, err
	}
	if err := copyFile(t.initrd, out.Initrd); err != nil {
		return nil, err
	}
	pk := append([]string(nil), r.packages...)
	sort.Strings(pk)
	im := api.Image{OS: osName, Recipe: b.Recipe(), Packages: pk, SizeB: b.size(), Root: cloudRootDevice,
		Cmdline: CloudCmdline, Built: time.Now().UTC(), BuildSeconds: time.Since(start).Round(time.Second).Seconds()}
	if err := storage.WriteImageMeta(out.Meta, im); err != nil {
		return nil, err
	}
	return [][2]string{{out.Kernel, files.Kernel}, {out.Initrd, files.Initrd}, {out.Template, files.Template}, {out.Meta, files.Meta}}, nil
}

// osRelease is the tree's PRETTY_NAME.
func osRelease(root string) string {
	b, _ := os.ReadFile(filepath.Join(root, "etc", "os-release"))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Debian GNU/Linux 12"
}
