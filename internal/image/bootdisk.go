package image

// The cloud image's disk, written without loop devices or mounts: an MBR
// with GRUB's boot.img, GRUB's core.img in the gap before the first
// partition (sectors 1..2047, where grub-install embeds it on an MBR
// disk), and one ext4 partition from sector 2048 made by mkfs.ext4 -d
// straight into the file at that offset.

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

const (
	sector    = 512
	partStart = 2048 // sectors: 1 MiB, the usual alignment
	// grubPrefix is where core.img finds its modules and grub.cfg: the
	// first partition of the boot disk.
	grubPrefix = "(hd0,msdos1)/boot/grub"
	// boot.img's fields (grub-core/boot/i386/pc/boot.S): the LBA of
	// core.img's first sector, and the jump that distrusts the BIOS's
	// boot drive (replaced by NOPs for hard disks, as grub-bios-setup does).
	bootKernelSector = 0x5c
	bootDriveCheck   = 0x66
	mbrSignature     = 0x1b8
	mbrPartTable     = 0x1be
)

// grubFiles puts GRUB's i386-pc modules into the tree's /boot/grub (as
// grub-install does) and returns a core.img that reads them from the
// first partition. core.img's first sector (diskboot.img) loads the rest
// from LBA 2 on by default, which is where writeDisk puts it.
func grubFiles(root string) ([]byte, error) {
	src := filepath.Join(root, "usr/lib/grub/i386-pc")
	dst := filepath.Join(root, "boot/grub/i386-pc")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return nil, fmt.Errorf("GRUB's modules (grub-pc-bin): %w", err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	if err := chroot(root, "", "", "grub-mkimage", "-O", "i386-pc", "-o", "/boot/grub/i386-pc/core.img",
		"-p", grubPrefix, "biosdisk", "part_msdos", "ext2"); err != nil {
		return nil, err
	}
	core, err := os.ReadFile(filepath.Join(dst, "core.img"))
	if err != nil {
		return nil, err
	}
	if len(core) > (partStart-1)*sector {
		return nil, fmt.Errorf("GRUB's core image is %d bytes, more than the %d before the partition", len(core), (partStart-1)*sector)
	}
	return core, nil
}

// writeDisk makes disk, a sparse raw file of size bytes: boot sector,
// core.img, and root's tree as an ext4 filesystem filling partition 1.
func writeDisk(ctx context.Context, root, disk string, core []byte, size int64, label string) error {
	boot, err := os.ReadFile(filepath.Join(root, "usr/lib/grub/i386-pc/boot.img"))
	if err != nil || len(boot) != sector {
		return fmt.Errorf("GRUB's boot.img (grub-pc-bin): %v", err)
	}
	// A new file in the build's scratch dir: never one already there.
	f, err := os.OpenFile(disk, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	partSectors := size/sector - partStart
	// mkfs.ext4 -d fills the filesystem from the tree, at the
	// partition's offset in the file; its size in 4 KiB blocks.
	mk := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-T", "default", "-b", "4096", "-L", label,
		"-E", "offset="+strconv.FormatInt(partStart*sector, 10)+",root_owner=0:0", "-d", root,
		disk, strconv.FormatInt(partSectors*sector/4096, 10))
	if out, err := mk.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 -d: %v: %s", err, out)
	}
	mbr := bootSector(boot, partSectors)
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return err
	}
	if _, err := f.WriteAt(core, sector); err != nil {
		return err
	}
	return f.Sync()
}

// bootSector is boot.img made the disk's MBR: pointed at core.img (LBA
// 1), with a signature and one bootable Linux partition from partStart.
func bootSector(boot []byte, partSectors int64) []byte {
	mbr := append([]byte(nil), boot...)
	binary.LittleEndian.PutUint64(mbr[bootKernelSector:], 1)
	mbr[bootDriveCheck], mbr[bootDriveCheck+1] = 0x90, 0x90
	binary.LittleEndian.PutUint32(mbr[mbrSignature:], 0x52464e43) // "RFNC"
	mbr[mbrSignature+4], mbr[mbrSignature+5] = 0, 0
	for i := mbrPartTable; i < 0x1fe; i++ {
		mbr[i] = 0
	}
	p := mbr[mbrPartTable:]
	p[0] = 0x80                            // bootable
	copy(p[1:4], []byte{0xfe, 0xff, 0xff}) // CHS: beyond 8 GiB, LBA is used
	p[4] = 0x83                            // Linux
	copy(p[5:8], []byte{0xfe, 0xff, 0xff})
	binary.LittleEndian.PutUint32(p[8:], partStart)
	binary.LittleEndian.PutUint32(p[12:], uint32(partSectors))
	mbr[0x1fe], mbr[0x1ff] = 0x55, 0xaa
	return mbr
}
