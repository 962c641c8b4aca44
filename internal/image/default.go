// Package image builds the default guest from Debian packages: the Debian
// cloud kernel (downloaded and unpacked, never installed on the host) and a
// busybox initramfs written by our own cpio writer.
package image

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// ReadyLine is what the default guest prints on ttyS0 when it is up.
const ReadyLine = "ringfence: guest ready"

// Modules the default guest loads (with their dependencies).
var wantModules = []string{"virtio_pci", "virtio_blk", "virtio_net", "virtio_balloon", "button", "evdev"}

// Paths of a built default image.
type Paths struct {
	Dir, Kernel, Initrd, Disk, Config string
}

// PathsIn returns where the default image lives in dir.
func PathsIn(dir string) Paths {
	return Paths{Dir: dir, Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"),
		Disk: filepath.Join(dir, "disk.img"), Config: filepath.Join(dir, "default.cfg")}
}

// recipe identifies what the builder puts in the image, so an image made
// by an older ringfence is rebuilt rather than silently reused.
func recipe() string {
	h := sha256.Sum256([]byte(initScript + udhcpcScript + strings.Join(wantModules, ",")))
	return hex.EncodeToString(h[:8])
}

// Built reports whether every file is there and made by this recipe.
func (p Paths) Built() bool {
	for _, f := range []string{p.Kernel, p.Initrd, p.Disk, p.Config} {
		if _, err := os.Stat(f); err != nil {
			return false
		}
	}
	b, err := os.ReadFile(filepath.Join(p.Dir, "RECIPE"))
	return err == nil && strings.TrimSpace(string(b)) == recipe()
}

// BuildDefault builds the default guest into dir. progress gets one line
// per step.
func BuildDefault(dir string, progress func(string)) (Paths, error) {
	p := PathsIn(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return p, err
	}
	tmp, err := os.MkdirTemp("", "ringfence-image-")
	if err != nil {
		return p, err
	}
	defer os.RemoveAll(tmp)

	progress("downloading the Debian cloud kernel (apt-get download linux-image-cloud-amd64)")
	deb, err := downloadKernel(tmp)
	if err != nil {
		return p, err
	}
	root := filepath.Join(tmp, "root")
	if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		return p, fmt.Errorf("unpacking %s: %v: %s", deb, err, out)
	}
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		return p, fmt.Errorf("expected one vmlinuz in %s, found %d", deb, len(kernels))
	}
	mods, _ := filepath.Glob(filepath.Join(root, "lib", "modules", "*", "kernel"))
	if len(mods) != 1 {
		return p, fmt.Errorf("expected one module tree in %s", deb)
	}

	progress("writing the busybox initramfs")
	initrd, err := buildInitramfs(mods[0])
	if err != nil {
		return p, err
	}
	if err := writeAtomic(p.Initrd, initrd, 0o644); err != nil {
		return p, err
	}
	kb, err := os.ReadFile(kernels[0])
	if err != nil {
		return p, err
	}
	if err := writeAtomic(p.Kernel, kb, 0o644); err != nil {
		return p, err
	}

	progress("making a 32 MiB ext4 data disk (mkfs.ext4 -d)")
	if err := buildDisk(p.Disk, tmp); err != nil {
		return p, err
	}
	if err := writeAtomic(p.Config, []byte(DefaultConfig(p)), 0o644); err != nil {
		return p, err
	}
	if err := writeAtomic(filepath.Join(dir, "RECIPE"), []byte(recipe()+"\n"), 0o644); err != nil {
		return p, err
	}
	progress("default guest ready in " + dir)
	return p, nil
}

// DefaultConfig is the default guest's domain file, in the seeds' style.
func DefaultConfig(p Paths) string {
	return fmt.Sprintf(`# Ringfence default guest: the Debian cloud kernel and a busybox initramfs.
# Start it with: ringfence create %s
name = "default"
type = "pv"
kernel = "%s"
ramdisk = "%s"
memory = 128
vcpus = 1
extra = "console=hvc0 quiet"
disk = [ 'file:%s,xvda,w' ]
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "restart"
`, p.Config, p.Kernel, p.Initrd, p.Disk)
}

func downloadKernel(dir string) (string, error) {
	get := func(pkg string) (string, error) {
		cmd := exec.Command("apt-get", "download", "-o", "APT::Sandbox::User=root", pkg)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get download %s: %v: %s (run apt-get update first?)", pkg, err, strings.TrimSpace(string(out)))
		}
		m, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
		if len(m) != 1 {
			return "", fmt.Errorf("apt-get download %s produced no package", pkg)
		}
		return m[0], nil
	}
	meta, err := get("linux-image-cloud-amd64")
	if err != nil {
		return "", err
	}
	out, err := exec.Command("dpkg-deb", "-f", meta, "Depends").Output()
	if err != nil {
		return "", fmt.Errorf("reading dependencies of %s: %w", meta, err)
	}
	var real string
	for _, d := range strings.Split(string(out), ",") {
		name := strings.Fields(strings.TrimSpace(d))
		if len(name) > 0 && strings.HasPrefix(name[0], "linux-image-") {
			real = name[0]
			break
		}
	}
	if real == "" {
		return "", fmt.Errorf("%s does not depend on a linux-image package", meta)
	}
	return get(real)
}

// moduleInfo reads a module's dependencies from its .modinfo section.
func moduleDeps(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, nil
	}
	b, err := s.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// moduleOrder returns the modules to load, dependencies first.
func moduleOrder(tree string, want []string) ([]string, map[string]string, error) {
	paths := map[string]string{}
	filepath.Walk(tree, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			name := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(p), ".ko"), "-", "_")
			paths[name] = p
		}
		return nil
	})
	var order []string
	seen := map[string]bool{}
	var visit func(string) error
	visit = func(m string) error {
		m = strings.ReplaceAll(m, "-", "_")
		if seen[m] {
			return nil
		}
		seen[m] = true
		p, ok := paths[m]
		if !ok {
			return nil // built into the kernel
		}
		deps, err := moduleDeps(p)
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		order = append(order, m)
		return nil
	}
	for _, w := range want {
		if err := visit(w); err != nil {
			return nil, nil, err
		}
	}
	return order, paths, nil
}

const initScript = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /mnt /tmp /sbin /usr/bin /usr/sbin /run
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in $(cat /etc/modules.order); do insmod /lib/modules/$m.ko 2>/dev/null; done
# The ACPI power button (ringfence shutdown) powers off cleanly.
for e in /sys/class/input/event*; do
  if grep -q "Power Button" $e/device/name 2>/dev/null; then
    (dd if=/dev/input/${e##*/} of=/dev/null bs=24 count=1 2>/dev/null &&
     { echo "ringfence: power button pressed, powering off"; sync; poweroff -f; }) &
  fi
done
if [ -b /dev/vda ] && mount /dev/vda /mnt 2>/dev/null; then echo "ringfence: /dev/vda mounted on /mnt"; fi
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  udhcpc -i eth0 -q -n -t 5 -s /etc/udhcpc.script >/dev/null 2>&1 &
fi
echo "` + ReadyLine + `"
while true; do setsid cttyhack sh -l; done
`

const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew)
  ip addr flush dev $interface
  ip addr add $ip/${mask:-24} dev $interface
  [ -n "$router" ] && ip route add default via ${router%% *} dev $interface
  [ -n "$dns" ] && for d in $dns; do echo "nameserver $d"; done > /etc/resolv.conf
  echo "ringfence: $interface has $ip" > /dev/console ;;
esac
`

func staticBusybox() ([]byte, error) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		static := true
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				static = false
			}
		}
		f.Close()
		if static {
			return os.ReadFile(p)
		}
	}
	return nil, fmt.Errorf("no static busybox found: apt-get install busybox-static")
}

func buildInitramfs(modTree string) ([]byte, error) {
	bb, err := staticBusybox()
	if err != nil {
		return nil, err
	}
	order, paths, err := moduleOrder(modTree, wantModules)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	c := &cpioWriter{w: gz}
	for _, d := range []string{"bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "mnt", "tmp", "root"} {
		c.Dir(d)
	}
	c.CharDev("dev/console", 5, 1)
	c.File("bin/busybox", 0o755, bb)
	c.Symlink("bin/sh", "busybox")
	c.File("init", 0o755, []byte(initScript))
	c.File("etc/udhcpc.script", 0o755, []byte(udhcpcScript))
	c.File("etc/modules.order", 0o644, []byte(strings.Join(order, "\n")+"\n"))
	c.File("etc/profile", 0o644, []byte("export PS1='default# '\n"))
	names := append([]string(nil), order...)
	sort.Strings(names)
	for _, m := range names {
		b, err := os.ReadFile(paths[m])
		if err != nil {
			return nil, err
		}
		c.File("lib/modules/"+m+".ko", 0o644, b)
	}
	if err := c.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func buildDisk(path, tmp string) error {
	src := filepath.Join(tmp, "disk")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "hello.txt"), []byte("hello from the ringfence default disk\n"), 0o644)
	part := path + ".tmp"
	os.Remove(part)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "rfdata", "-d", src, part, "32M").CombinedOutput(); err != nil {
		os.Remove(part)
		return fmt.Errorf("mkfs.ext4: %v: %s (apt-get install e2fsprogs)", err, out)
	}
	return os.Rename(part, path)
}

func writeAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, bytes.NewReader(data)); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	f.Close()
	return os.Rename(tmp, path)
}
