package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
)

// cmdPos is where the command line was set: the last of root=, extra=
// and cmdline= in the file.
func (d *decoder) cmdPos() Pos {
	var at Pos
	for _, k := range []string{"root", "extra", "cmdline"} {
		if p, ok := d.pos[k]; ok && (at.Line == 0 || at.before(p)) {
			at = p
		}
	}
	return at
}

// xenConsoles are Xen's PV console names, which are the first serial
// port under KVM.
var xenConsoles = map[string]bool{"console=hvc0": true, "console=xvc0": true, "console=tty0": true}

// mapCmdline rewrites Xen device names on the kernel command line to the
// virtio names the guest will see, and Xen's console to the serial port,
// and says so.
func (d *decoder) mapCmdline(cmd string) string {
	fields := strings.Fields(cmd)
	for i, f := range fields {
		if dev, ok := strings.CutPrefix(f, "root=/dev/"); ok {
			if guest := d.guestDevice(dev); guest != "" && guest != dev {
				fields[i] = "root=/dev/" + guest
				d.warn(d.cmdPos(), "cmdline", "root=/dev/%s rewritten to root=/dev/%s: that is the device the guest sees under KVM", dev, guest)
			}
		}
		if xenConsoles[f] {
			fields[i] = "console=ttyS0"
			d.warn(d.cmdPos(), "cmdline", "%s rewritten to console=ttyS0: Xen's PV console is the first serial port under KVM (`ringfence console`)", f)
		}
	}
	return strings.Join(fields, " ")
}

// guestDevice maps a Xen device name from root= to the virtio name: a
// vdev listed as a disk (xvda1 -> vda: a partition vdev is a whole disk),
// or a partition of a whole-disk vdev (xvda + 2 -> vda2).
//
// Only Xen names are mapped: root=/dev/vdX already names what the guest
// sees, whatever a vdev happens to be called (and mapping it again would
// make the rewrite apply twice on export and re-parse).
func (d *decoder) guestDevice(dev string) string {
	if strings.HasPrefix(dev, "vd") {
		return ""
	}
	for _, disk := range d.spec.Disks {
		if dev == disk.VDev {
			return disk.Guest
		}
	}
	for _, disk := range d.spec.Disks {
		last := disk.VDev[len(disk.VDev)-1]
		if rest, ok := strings.CutPrefix(dev, disk.VDev); ok && rest != "" && !(last >= '0' && last <= '9') && strings.Trim(rest, "0123456789") == "" {
			return disk.Guest + rest
		}
	}
	return ""
}

// dropPVGrubMenu turns a PV GRUB domain (kernel = pv-grub*.gz) into one
// whose firmware boots the disk's own GRUB: PV GRUB cannot run under KVM.
// Its command line (the menu.lst path) is what PV GRUB read; the disk's
// GRUB finds its own menu.
func (d *decoder) dropPVGrubMenu() {
	menu := ""
	for _, s := range []string{d.cmdline, d.extra, d.root} {
		if s != "" {
			menu = s
			break
		}
	}
	said := ""
	if menu != "" {
		said = fmt.Sprintf("; its command line %q (PV GRUB's menu) is not needed: the disk's GRUB reads its own", menu)
	}
	d.warn(d.pos["kernel"], "kernel", "kernel = %s is Xen's PV GRUB, which cannot run under KVM: the firmware boots the disk's own GRUB instead (as bootloader = 'pygrub')%s", d.pvgrub, said)
	d.spec.Kernel, d.spec.Ramdisk, d.spec.Bootloader = "", "", "pvgrub"
	d.extra, d.root, d.cmdline, d.hasCmd = "", "", "", false
}

// bootloaderWarning: pygrub and PV GRUB read a GRUB menu from a
// filesystem, even a partition image with no partition table; under KVM
// the firmware boots the first disk, which needs a boot sector. A first
// disk named as a partition (xvda2) is most likely such an image.
func (d *decoder) bootloaderWarning() {
	s := &d.spec
	if s.Bootloader == "" || s.Kernel != "" || len(s.Disks) == 0 {
		return
	}
	first := s.Disks[0]
	if last := first.VDev[len(first.VDev)-1]; last < '0' || last > '9' {
		return
	}
	at := d.pos["bootloader"]
	if items := d.items["disk"]; len(items) > 0 {
		at = items[0]
	}
	d.warn(at, "bootloader", "the first disk, %s (the guest's /dev/%s), is named as a partition: %s reads a bare filesystem, but the firmware boots the first disk, which needs a boot sector and a partition table; if it is a filesystem image, boot it with kernel= and ramdisk= instead", first.VDev, first.Guest, bootloaderName(s.Bootloader))
}

func bootloaderName(b string) string {
	if b == "pvgrub" {
		return "PV GRUB"
	}
	return filepath.Base(b)
}

// bootSectorWarning looks at the first disk of a domain that boots from
// it (pygrub, PV GRUB): with no boot sector signature (0x55 0xAA at byte
// 510), the firmware finds nothing to boot. A disk the reader cannot read
// here (another host's, a permission) is not looked at.
func bootSectorWarning(file string, s api.DomainSpec) *Warning {
	if s.Bootloader == "" || s.Kernel != "" || len(s.Disks) == 0 || s.Disks[0].Target == "" {
		return nil
	}
	f, err := os.Open(s.Disks[0].Target)
	if err != nil {
		return nil
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := io.ReadFull(f, b); err != nil || s.Disks[0].Format != "raw" {
		return nil
	}
	if b[510] == 0x55 && b[511] == 0xAA {
		return nil
	}
	return &Warning{Pos: Pos{File: file}, Key: "bootloader", Msg: fmt.Sprintf("the first disk, %s, has no boot sector (no 0x55AA signature at byte 510): %s would read its filesystem, but the firmware boots the disk and finds nothing; boot it with kernel= and ramdisk=, or give a whole-disk image", s.Disks[0].Target, bootloaderName(s.Bootloader))}
}
