package image

// Helpers shared by the images built with debootstrap (BuildDebian,
// BuildHostVM): the cached, locked build directory and the steps that
// turn a Debian tree into a kernel, an initramfs and a raw ext4 root.

import (
	"bufio"
	"context"
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

// cachedBuild is one image kept in a directory and rebuilt only when its
// recipe changes.
type cachedBuild struct {
	what   string      // "the Debian image", for messages
	dir    string      // where the finished files live
	recipe string      // the recipe file in dir, written last
	built  func() bool // every file there and made by this recipe
}

// run makes the image unless it is already built. Concurrent callers wait
// for one build (a lock file in dir). build works in a scratch directory
// in dir and returns the finished files as (scratch path, final path)
// pairs, the recipe last; they are renamed into place, the old recipe
// removed first: a failed or interrupted build leaves the old files, or
// none that built accepts, and no rootfs tree.
func (c cachedBuild) run(log io.Writer, build func(scratch string) ([][2]string, error)) error {
	if c.built() {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("building %s needs root (debootstrap, chroot)", c.what)
	}
	for _, tool := range []string{"debootstrap", "mkfs.ext4", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: apt-get install debootstrap e2fsprogs (make deps)", tool)
		}
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(c.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("locking %s: %w", c.dir, err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	if c.built() { // another process built it while we waited
		return nil
	}
	// Scratch left by an interrupted build.
	old, _ := filepath.Glob(filepath.Join(c.dir, ".build-*"))
	for _, o := range old {
		if err := removeScratch(o); err != nil {
			return err
		}
	}
	scratch, err := os.MkdirTemp(c.dir, ".build-")
	if err != nil {
		return err
	}
	defer func() {
		if err := removeScratch(scratch); err != nil {
			fmt.Fprintf(log, "==> warning: %v\n", err)
		}
	}()
	moves, err := build(scratch)
	if err != nil {
		return err
	}
	if len(moves) == 0 || moves[len(moves)-1][1] != c.recipe {
		return fmt.Errorf("internal error: the build of %s must end with its recipe", c.what)
	}
	// Into place: the old recipe goes first and the new one comes last,
	// so the directory never holds a recipe with files it does not
	// describe.
	if err := os.Remove(c.recipe); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, mv := range moves {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			return err
		}
	}
	if d, err := os.Open(c.dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// debootstrap makes a minbase tree of suite with packages added (their
// dependencies, not their recommends). Its output goes to out.
func debootstrap(ctx context.Context, root string, packages []string, cacheDir string, out io.Writer) error {
	args := []string{"--variant=minbase", "--components=main", "--include=" + strings.Join(packages, ",")}
	if cacheDir != "" {
		if err := os.MkdirAll(cacheDir, 0o755); err != nil {
			return err
		}
		args = append(args, "--cache-dir="+cacheDir)
	}
	cmd := exec.CommandContext(ctx, "debootstrap", append(args, debianSuite, root, debianMirror)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8")
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("debootstrap: %v (its log: %s)", err, filepath.Join(root, "debootstrap", "debootstrap.log"))
	}
	return nil
}

// configureTree writes files (path -> content) into root, sets root's
// password and enables units.
func configureTree(root string, files map[string]string, rootPassword string, units []string) error {
	for name, content := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		os.Remove(path) // may be a symlink into the host, like resolv.conf
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	if rootPassword != "" {
		if err := chroot(root, rootPassword, "root:"+rootPassword+"\n", "chpasswd"); err != nil {
			return err
		}
	}
	if len(units) == 0 {
		return nil
	}
	return chroot(root, "", "", append([]string{"systemctl", "enable"}, units...)...)
}

// treeKernel returns the path of the tree's one kernel and its version.
func treeKernel(root string) (string, string, error) {
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		return "", "", fmt.Errorf("expected one kernel in the guest's /boot, found %d", len(kernels))
	}
	return kernels[0], strings.TrimPrefix(filepath.Base(kernels[0]), "vmlinuz-"), nil
}

// updateInitramfs rebuilds the tree's initramfs for kver and checks that
// it has modules; it returns the initramfs's path.
func updateInitramfs(root, kver string, modules []string, log io.Writer) (string, error) {
	fmt.Fprintf(log, "==> update-initramfs -u -k %s\n", kver)
	if err := chroot(root, "", "", "update-initramfs", "-u", "-k", kver); err != nil {
		return "", err
	}
	if err := checkInitramfs(root, kver, modules, log); err != nil {
		return "", err
	}
	return filepath.Join(root, "boot", "initrd.img-"+kver), nil
}

// pruneTree removes prune from the tree, puts back the directories apt
// expects, and makes sure nothing started in the tree is still running.
func pruneTree(root string, prune []string) error {
	for _, pr := range prune {
		if err := os.RemoveAll(filepath.Join(root, pr)); err != nil {
			return err
		}
	}
	// apt expects these to exist.
	os.MkdirAll(filepath.Join(root, "var/lib/apt/lists/partial"), 0o755)
	os.MkdirAll(filepath.Join(root, "var/cache/apt/archives/partial"), 0o755)
	if pids, err := exec.Command("pgrep", "-f", root).Output(); err == nil && len(pids) > 0 {
		return fmt.Errorf("processes started in the guest tree are still running: %s", strings.Fields(string(pids)))
	}
	return nil
}

// makeRootFS writes root into img, a sparse raw ext4 filesystem with no
// partition table: 30% more than the tree uses, in 64 MiB steps, and at
// least minSize.
func makeRootFS(root, img, label string, minSize int64, log io.Writer) error {
	used, nfiles, err := treeUsage(root)
	if err != nil {
		return err
	}
	size := roundUp(used+used*3/10, 64<<20)
	if size < minSize {
		size = roundUp(minSize, 64<<20)
	}
	inodes := size / 16384
	if need := nfiles * 13 / 10; need > inodes {
		inodes = need
	}
	fmt.Fprintf(log, "==> mkfs.ext4 -d: %d MiB used, %d files -> %d MiB root filesystem\n", used>>20, nfiles, size>>20)
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	err = f.Truncate(size) // sparse: mkfs writes only what it fills
	f.Close()
	if err != nil {
		return err
	}
	mk := exec.Command("mkfs.ext4", "-q", "-F", "-T", "default", "-b", "4096", "-N", strconv.FormatInt(inodes, 10),
		"-L", label, "-E", "root_owner=0:0", "-d", root, img)
	if b, err := mk.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %v: %s", err, b)
	}
	if b, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
		return fmt.Errorf("e2fsck on the new root filesystem: %v: %s", err, b)
	}
	return syncFile(img)
}

// chroot runs a command in root with stdin; secret, if set, is kept out
// of error messages.
func chroot(root, secret, stdin string, args ...string) error {
	_, err := chrootOutput(root, secret, stdin, args...)
	return err
}

// chrootOutput is chroot returning the command's output.
func chrootOutput(root, secret, stdin string, args ...string) (string, error) {
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
		return "", fmt.Errorf("chroot %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(msg))
	}
	return string(b), nil
}

// checkInitramfs makes sure the guest's initramfs can mount a virtio root
// (and whatever else modules are for): every module is in it or built
// into the kernel.
func checkInitramfs(root, kver string, modules []string, log io.Writer) error {
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
	for _, m := range modules {
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

// tailWriter keeps the last max bytes written to it: a quiet build's
// output, shown only when the build fails.
type tailWriter struct {
	max int
	buf []byte
}

func (w *tailWriter) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	if len(w.buf) > w.max {
		w.buf = append([]byte(nil), w.buf[len(w.buf)-w.max:]...)
	}
	return len(b), nil
}

func (w *tailWriter) String() string { return string(w.buf) }

// treeRecipe is what a debootstrapped boot image is made of (BuildDebian,
// BuildHostVM): one build for both, and its hash names the result.
type treeRecipe struct {
	what         string // "the Debian image", for messages
	tag          string // prefix of the hashed text ("" for the Debian image, whose hash predates the others)
	version      string // bumped when the steps change in a way the rest does not capture
	packages     []string
	modules      []string // into the initramfs
	units        []string // enabled
	prune        []string
	rootPassword string
	files        map[string]string // written into the tree after debootstrap
	executables  []string          // of files, made executable
	label        string            // of the ext4 root
	minSize      int64             // of the root filesystem; 0: what the tree needs
	configuring  string            // the log line of the configuring step
	// check runs on the debootstrapped tree (nil: none).
	check func(root string) error
	// quiet keeps debootstrap's output out of log, for the error only.
	quiet bool
	// cacheDir keeps the downloaded .debs between builds ("": none).
	cacheDir string
}

// hash hashes everything the image is made from.
func (r treeRecipe) hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "%sversion %s\nsuite %s\nmirror %s\nvariant minbase\n", r.tag, r.version, debianSuite, debianMirror)
	size := "size used+30% /64MiB"
	if r.minSize > 0 {
		size += fmt.Sprintf(" min %d", r.minSize)
	}
	fmt.Fprintf(h, "packages %s\nmodules %s\nunits %s\nprune %s\nroot password %s\n%s\n",
		strings.Join(r.packages, ","), strings.Join(r.modules, ","), strings.Join(r.units, ","),
		strings.Join(r.prune, ","), r.rootPassword, size)
	if len(r.executables) > 0 {
		fmt.Fprintf(h, "executables %s\n", strings.Join(r.executables, ","))
	}
	names := make([]string, 0, len(r.files))
	for n := range r.files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "file %s %d\n%s", n, len(r.files[n]), r.files[n])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// BootImage are the files of a built boot image: a kernel and initramfs
// copied out of the tree's /boot and its root as a raw ext4 filesystem
// with no partition table.
type BootImage struct {
	Dir    string
	Kernel string // the tree's /boot/vmlinuz-*
	Initrd string // the tree's /boot/initrd.img-*
	Root   string // raw ext4
	Recipe string // hash of what the image was made from
	want   string // the current recipe's hash
}

func bootImageIn(dir, recipe string) BootImage {
	return BootImage{Dir: dir, Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"),
		Root: filepath.Join(dir, "root.img"), Recipe: filepath.Join(dir, "RECIPE"), want: recipe}
}

// Built reports whether every file is there and made by this recipe.
func (p BootImage) Built() bool {
	for _, f := range []string{p.Kernel, p.Initrd, p.Root} {
		if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			return false
		}
	}
	b, err := os.ReadFile(p.Recipe)
	return err == nil && strings.TrimSpace(string(b)) == p.want
}

// buildBootImage makes r's image in dir unless it is already built by
// this recipe (cachedBuild: locked, scratch, renamed into place).
func buildBootImage(r treeRecipe, dir string, log io.Writer) (BootImage, error) {
	if log == nil {
		log = io.Discard
	}
	p := bootImageIn(dir, r.hash())
	start := time.Now()
	building := false
	c := cachedBuild{what: r.what, dir: dir, recipe: p.Recipe, built: p.Built}
	err := c.run(log, func(scratch string) ([][2]string, error) {
		building = true
		out, err := r.buildIn(scratch, log)
		if err != nil {
			return nil, err
		}
		return [][2]string{{out.Kernel, p.Kernel}, {out.Initrd, p.Initrd}, {out.Root, p.Root}, {out.Recipe, p.Recipe}}, nil
	})
	if err != nil {
		return p, fmt.Errorf("building %s in %s: %w", r.what, dir, err)
	}
	if building {
		fmt.Fprintf(log, "==> %s ready in %s (%s)\n", r.what, dir, time.Since(start).Round(time.Second))
	}
	return p, nil
}

// buildIn does the work in scratch and returns the finished files, still
// in scratch.
func (r treeRecipe) buildIn(scratch string, log io.Writer) (BootImage, error) {
	hash := r.hash()
	out := bootImageIn(scratch, hash)
	t, err := r.prepareTree(context.Background(), scratch, log)
	if err != nil {
		return out, err
	}
	if err := copyFile(t.kernel, out.Kernel); err != nil {
		return out, err
	}
	if err := copyFile(t.initrd, out.Initrd); err != nil {
		return out, err
	}
	if err := makeRootFS(t.root, out.Root, r.label, r.minSize, r.stepLog(log)); err != nil {
		return out, err
	}
	if err := writeAtomic(out.Recipe, []byte(hash+"\n"), 0o644); err != nil {
		return out, err
	}
	return out, nil
}

// stepLog is where the detail of the steps after debootstrap goes.
func (r treeRecipe) stepLog(log io.Writer) io.Writer {
	if r.quiet {
		return io.Discard
	}
	return log
}

// preparedTree is a configured, pruned Debian tree with its kernel and
// initramfs.
type preparedTree struct{ root, kernel, initrd string }

// prepareTree debootstraps the recipe's tree into scratch/rootfs,
// configures it, rebuilds its initramfs and prunes it. ctx ends
// debootstrap (the longest step) and is checked between the others.
func (r treeRecipe) prepareTree(ctx context.Context, scratch string, log io.Writer) (preparedTree, error) {
	t := preparedTree{root: filepath.Join(scratch, "rootfs")}
	fmt.Fprintf(log, "==> debootstrap --variant=minbase %s (%s)\n", debianSuite, strings.Join(r.packages, " "))
	var bootstrapOut io.Writer = log
	quiet := &tailWriter{max: 8 << 10}
	if r.quiet {
		bootstrapOut = quiet
	}
	if err := debootstrap(ctx, t.root, r.packages, r.cacheDir, bootstrapOut); err != nil {
		if r.quiet {
			return t, fmt.Errorf("%w\nlast of its output:\n%s", err, quiet)
		}
		return t, err
	}
	if r.check != nil {
		if err := r.check(t.root); err != nil {
			return t, err
		}
	}
	if err := ctx.Err(); err != nil {
		return t, err
	}
	fmt.Fprintln(log, "==> configuring: "+r.configuring)
	if err := configureTree(t.root, r.files, r.rootPassword, r.units); err != nil {
		return t, err
	}
	for _, x := range r.executables {
		if err := os.Chmod(filepath.Join(t.root, x), 0o755); err != nil {
			return t, err
		}
	}
	kernel, kver, err := treeKernel(t.root)
	if err != nil {
		return t, err
	}
	if err := ctx.Err(); err != nil {
		return t, err
	}
	initrd, err := updateInitramfs(t.root, kver, r.modules, r.stepLog(log))
	if err != nil {
		return t, err
	}
	if err := pruneTree(t.root, r.prune); err != nil {
		return t, err
	}
	t.kernel, t.initrd = kernel, initrd
	return t, ctx.Err()
}
