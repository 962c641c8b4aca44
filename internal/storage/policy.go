package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/imagelock"
	"github.com/ringfence/ringfence/internal/procfs"
	"golang.org/x/sys/unix"
)

// Use is what a host path is asked for.
type Use int

const (
	// UseDisk is a writable disk image or block device.
	UseDisk Use = iota
	// UseDiskRO is a read-only disk or a CD-ROM medium.
	UseDiskRO
	// UseBoot is a kernel or ramdisk (read into guest memory).
	UseBoot
	// UsePool is a pool's directory.
	UsePool
	// UseNew is a directory Ringfence creates disk files in (imports,
	// disks copied by a migration).
	UseNew
)

func (u Use) String() string {
	return [...]string{"disk", "read-only disk", "boot file", "pool directory", "directory for new disks"}[u]
}

// Policy says which host paths may reach a guest or hold its disks: like
// xl's block script and better. Whatever the caller (a domain file, the
// API, a migrating peer, a restore), the same rules apply:
//   - never the host's own system trees (/etc, /usr, /proc, ...) or
//     Ringfence's own state (the store, keys, run dir), except the state
//     dir's image and import dirs and defined pools;
//   - never a block device that is mounted, swapped on, or holds (or is
//     held by) something mounted; a loop device is judged by its file;
//   - never an image another process holds open in a conflicting way
//     (QEMU's image locks, see internal/imagelock);
//   - with Roots set, files (not block devices) only inside them.
type Policy struct {
	StateDir string
	RunDir   string
	// Managed are directories under StateDir that hold guest images.
	Managed []string
	// Roots, when set, are the only directories file disks, boot files
	// and pools may be in.
	Roots []string
	// Pools returns the defined pools' directories (always allowed).
	Pools func() []string
	// MountInfo and Swaps are the host's tables (tests point them at
	// fixtures); "" = /proc/self/mountinfo and /proc/swaps.
	MountInfo, Swaps string
	// SysBlock is /sys/dev/block ("" = that).
	SysBlock string
}

// systemTrees never hold a guest's disks: they are the host. /boot may
// hold kernels (UseBoot) but not disks.
var systemTrees = []string{"/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sys", "/run", "/var/lib/dpkg", "/var/lib/apt"}

// Origin is who named a path: the admin of this host, or a peer host
// migrating a domain here.
type Origin int

const (
	// Local: the admin (a domain file, the API, a restore, an import).
	Local Origin = iota
	// FromPeer: a migrating host. It may name only what this host's admin
	// declared for guests (state image dirs, pools, --disk-roots; kernels
	// also in /boot), and the images' locks are the source's until the
	// handover (taken then).
	FromPeer
)

// Check refuses path for use with a clear error, or returns nil. A
// missing file is not this function's concern (validation says so).
func (p *Policy) Check(use Use, path string) error { return p.check(use, path, Local) }

// CheckFrom is Check for a path named by from.
func (p *Policy) CheckFrom(from Origin, use Use, path string) error { return p.check(use, path, from) }

// CheckImage is Check for a disk image of format, and for every file its
// headers make QEMU open (backing files read-only, data files as the
// disk), transitively.
func (p *Policy) CheckImage(from Origin, use Use, path, format string) error {
	if p == nil {
		return nil
	}
	if err := p.check(use, path, from); err != nil {
		return err
	}
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
		return nil // block devices are read raw; missing: validation says so
	}
	chain, err := BackingChain(path, format)
	if err != nil {
		return api.Errorf(api.ErrInvalid, "%s %s: %v", use, path, err)
	}
	for _, l := range chain {
		u, what := UseDiskRO, "its backing file"
		if l.Data {
			u, what = use, "its data file"
		}
		if err := p.check(u, l.Path, from); err != nil {
			return api.Errorf(api.ErrCode(err, api.ErrInvalid), "%s %s: %s %s: %v", use, path, what, l.Path, err)
		}
		if _, err := os.Stat(l.Path); err != nil {
			return api.Errorf(api.ErrInvalid, "%s %s: %s %s: %v", use, path, what, l.Path, err)
		}
	}
	return nil
}

func (p *Policy) check(use Use, path string, from Origin) error {
	locks := from == Local
	if p == nil {
		return nil
	}
	if !filepath.IsAbs(path) {
		return api.Errorf(api.ErrInvalid, "%s %q must be an absolute path", use, path)
	}
	real, err := filepath.EvalSymlinks(path)
	if errors.Is(err, os.ErrNotExist) && (use == UseNew || use == UsePool) {
		real, err = resolveParent(path)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return api.Errorf(api.ErrInvalid, "%s %s: %v", use, path, err)
	}
	refuse := func(why, fix string) error {
		shown := path
		if real != path {
			shown = fmt.Sprintf("%s (%s)", path, real)
		}
		return api.Errorf(api.ErrInvalid, "%s %s is refused: %s; %s", use, shown, why, fix)
	}
	fi, err := os.Stat(real)
	isBlock := err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
	if isBlock {
		if use != UseDisk && use != UseDiskRO {
			return refuse("it is a block device", "give a file")
		}
		if from == FromPeer && !p.inRoots(real) && !p.inRoots(filepath.Clean(path)) {
			return refuse("a migrating host may name a block device only under this host's --disk-roots", "on this host, serve --disk-roots with the device's directory (e.g. /dev/VG)")
		}
		if err := p.checkBlock(path, real, fi, use); err != nil {
			return err
		}
		return lockTest(locks, use, path, real)
	}
	if under(real, "/dev") {
		return refuse("it is a device node that is not a block device", "give an image file or a block device")
	}
	for _, t := range systemTrees {
		if under(real, t) {
			return refuse("it is inside "+t+", part of the host's own system", "put guest images in a pool or a directory of their own")
		}
	}
	if under(real, "/boot") && use != UseBoot {
		return refuse("/boot holds the host's boot files", "put guest images in a pool or a directory of their own")
	}
	if real == "/" && use == UsePool {
		return refuse("a pool cannot be the whole host", "give a directory of its own")
	}
	if p.RunDir != "" && under(real, p.RunDir) {
		return refuse("it is inside Ringfence's run dir "+p.RunDir, "put guest images in a pool or a directory of their own")
	}
	if p.StateDir != "" && under(real, p.StateDir) && !p.managed(real) {
		return refuse("it is Ringfence's own state (the store, keys, snapshots) in "+p.StateDir, "put guest images in a pool, or in "+filepath.Join(p.StateDir, "images"))
	}
	if (use == UsePool || use == UseNew) && p.StateDir != "" && under(p.StateDir, real) {
		return refuse("it contains Ringfence's own state dir "+p.StateDir, "give a directory of its own")
	}
	if len(p.Roots) > 0 && !p.inRoots(real) && !p.managed(real) {
		return refuse("it is outside the directories this host allows (serve --disk-roots "+strings.Join(p.Roots, ",")+")", "move it into one of them, or widen --disk-roots")
	}
	if from == FromPeer && !p.inRoots(real) && !p.managed(real) && !(use == UseBoot && under(real, "/boot")) {
		return refuse("a migrating host may name only this host's guest storage: its pools, --disk-roots and "+filepath.Join(p.StateDir, "images"),
			"on this host, define a pool holding it (`ringfence pool create NAME --dir DIR`) or serve --disk-roots DIR")
	}
	if err == nil && fi.Mode().IsRegular() {
		return lockTest(locks, use, path, real)
	}
	return nil
}

// lockTest refuses a disk image another process holds in a way that
// conflicts with use (QEMU's image locks).
func lockTest(locks bool, use Use, path, real string) error {
	if !locks || use != UseDisk && use != UseDiskRO {
		return nil
	}
	if err := imagelock.TestPath(real, use == UseDisk); err != nil {
		return api.Errorf(api.ErrConflict, "%s %s: %v; a disk can be shared only read-only", use, path, err)
	}
	return nil
}

// resolveParent resolves the nearest existing ancestor of a path that does
// not exist yet and appends the rest.
func resolveParent(path string) (string, error) {
	dir, rest := filepath.Dir(path), filepath.Base(path)
	for {
		real, err := filepath.EvalSymlinks(dir)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, os.ErrNotExist) || dir == "/" {
			return "", err
		}
		dir, rest = filepath.Dir(dir), filepath.Join(filepath.Base(dir), rest)
	}
}

func (p *Policy) managed(real string) bool {
	for _, m := range p.Managed {
		if under(real, m) {
			return true
		}
	}
	if p.Pools != nil {
		for _, d := range p.Pools() {
			if under(real, d) {
				return true
			}
		}
	}
	return false
}

func (p *Policy) inRoots(real string) bool {
	for _, r := range p.Roots {
		if rr, err := filepath.EvalSymlinks(r); err == nil && under(real, rr) {
			return true
		}
	}
	return false
}

// under reports whether path is dir or inside it (both clean, absolute).
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// checkBlock refuses a block device the host is using: mounted or swapped
// on, itself or through a partition or a device stacked on it (a
// partition, LVM, dm-crypt, md), or a loop device whose file is refused.
func (p *Policy) checkBlock(path, real string, fi os.FileInfo, use Use) error {
	st := fi.Sys().(*syscall.Stat_t)
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	mounts, err := p.mounted()
	if err != nil {
		return err
	}
	sys := p.SysBlock
	if sys == "" {
		sys = "/sys/dev/block"
	}
	seen := map[string]bool{}
	var walk func(d, via string) error
	walk = func(d, via string) error {
		if seen[d] {
			return nil
		}
		seen[d] = true
		if where, ok := mounts[d]; ok {
			msg := "it is mounted on " + where
			if via != "" {
				msg = "it holds " + via + ", which is mounted on " + where
			}
			return api.Errorf(api.ErrInvalid, "disk %s is refused: %s; a guest must never share a filesystem with the host: unmount it first", path, msg)
		}
		dir := filepath.Join(sys, d)
		// Partitions of a whole disk and devices stacked on it (holders).
		var next []string
		if ents, err := os.ReadDir(filepath.Join(dir, "holders")); err == nil {
			for _, e := range ents {
				if b, err := os.ReadFile(filepath.Join(dir, "holders", e.Name(), "dev")); err == nil {
					next = append(next, strings.TrimSpace(string(b))+"|"+e.Name())
				}
			}
		}
		if ents, err := os.ReadDir(dir + "/"); err == nil {
			for _, e := range ents {
				if _, err := os.Stat(filepath.Join(dir, e.Name(), "partition")); err == nil {
					if b, err := os.ReadFile(filepath.Join(dir, e.Name(), "dev")); err == nil {
						next = append(next, strings.TrimSpace(string(b))+"|"+e.Name())
					}
				}
			}
		}
		for _, n := range next {
			d2, name, _ := strings.Cut(n, "|")
			if err := walk(d2, "/dev/"+name); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(dev, ""); err != nil {
		return err
	}
	// A loop device is its backing file.
	if b, err := os.ReadFile(filepath.Join(sys, dev, "loop", "backing_file")); err == nil {
		if f := strings.TrimSpace(string(b)); f != "" {
			if err := p.check(use, f, Local); err != nil {
				return api.Errorf(api.ErrInvalid, "disk %s is a loop device on %s: %v", path, f, err)
			}
		}
	}
	return nil
}

// mounted maps "major:minor" of every mounted or swapped-on device to
// where.
func (p *Policy) mounted() (map[string]string, error) {
	sw := p.Swaps
	if sw == "" {
		sw = procfs.Swaps
	}
	out := map[string]string{}
	ms, err := procfs.Mountinfo(p.MountInfo)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if _, ok := out[m.MajorMinor]; !ok {
			out[m.MajorMinor] = m.Point
		}
	}
	if b, err := os.ReadFile(sw); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) == 0 {
				continue
			}
			var st unix.Stat_t
			if unix.Stat(fs[0], &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
				out[fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))] = "swap"
			}
		}
	}
	return out, nil
}
