package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestXLVifDefaultBridgeMTU: a vif with no bridge= goes on xenbr0, as in
// xl; with no xenbr0 the create is refused with the fix and leaves
// nothing. mtu= is the tap's MTU, and a virtio guest is told it.
func TestXLVifDefaultBridgeMTU(t *testing.T) {
	e := NewEnv(t)
	r := e.RF("create", e.WriteConfig("nobr", "vif = [ '' ]"))
	if r.Code == 0 || !strings.Contains(r.Stderr, `bridge "xenbr0" does not exist`) || !strings.Contains(r.Stderr, "ringfence network create xenbr0") ||
		!strings.Contains(r.Stderr, "xenbr0 is where a vif with no bridge= goes, as in xl") {
		t.Fatalf("a vif with no bridge= and no xenbr0: %+v", r)
	}
	if len(e.List()) != 0 || len(e.QEMUs()) != 0 || strings.Contains(e.Links(), "vif") {
		t.Fatalf("a refused create left a domain, a QEMU or a tap:\n%s", e.Links())
	}

	mustRun(t, "ip", "-n", e.Netns, "link", "add", "xenbr0", "type", "bridge")
	mustRun(t, "ip", "-n", e.Netns, "link", "set", "xenbr0", "up")
	c := e.Boot("mtu1", "vif = [ 'mac=00:16:3e:0a:0b:0c, mtu=1400,' ]")
	tap := "vif" + itoa(e.Domain("mtu1").ID) + ".0"
	link := mustRun(t, "ip", "-n", e.Netns, "-o", "link", "show", tap)
	if !strings.Contains(link, "master xenbr0") || !strings.Contains(link, "mtu 1400 ") {
		t.Fatalf("the tap is not on xenbr0 with MTU 1400: %s", link)
	}
	c.Do("echo mtu=$(cat /sys/class/net/eth0/mtu)", "mtu=1400", 30*time.Second)
	if out := e.MustRF("config", "export", "mtu1"); !strings.Contains(out, "bridge=xenbr0") || !strings.Contains(out, "mtu=1400") {
		t.Fatalf("export lost the bridge or the MTU:\n%s", out)
	}
	e.MustRF("destroy", "mtu1")
	if strings.Contains(e.Links(), tap) {
		t.Fatalf("tap %s left after destroy", tap)
	}
}

// TestXLReaderLimitsAndWording: what the domain-file reader refuses is
// refused with the place and the reason, before anything is made: every
// error of a file in line order, /dev/zero, a million '[', a NUL byte;
// config check --json and --strict; and names the CLI cannot use.
func TestXLReaderLimitsAndWording(t *testing.T) {
	e := NewEnv(t)
	bad := filepath.Join(e.Dir, "bad.cfg")
	os.WriteFile(bad, []byte("name = 'bad'\nmemory = 'lots'\nkernel = 'vmlinuz'\nvif = [ 'vlan=10' ]\nmaxmem = 64\n"), 0o644)
	r := e.RF("create", bad)
	lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
	if r.Code == 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], bad+":2:10: error: memory") || !strings.HasPrefix(lines[1], bad+":3:10: error: kernel") ||
		!strings.HasPrefix(lines[2], bad+":4:9: error: vif: vlan=10") || !strings.Contains(lines[3], "has 3 errors (above): nothing was done") {
		t.Fatalf("every error in line order: %+v", r)
	}

	nested := filepath.Join(e.Dir, "nested.cfg")
	os.WriteFile(nested, []byte("name = 'deep'\nvif = "+strings.Repeat("[", 1000000)+"\n"), 0o644)
	nul := filepath.Join(e.Dir, "nul.cfg")
	os.WriteFile(nul, []byte("name = 'nul'\nkernel = '/k'\non_crash = 'pre\x00serve'\n"), 0o644)
	for file, want := range map[string]string{
		"/dev/zero": "/dev/zero: 1048577 bytes or more, over the 1048576 a domain file may have",
		nested:      nested + ":2:15: lists nested 9 deep",
		nul:         nul + ":3:16: a NUL byte",
	} {
		start := time.Now()
		r := e.RF("create", file)
		if r.Code == 0 || !strings.Contains(r.Stderr, want) || strings.Count(r.Stderr, "\n") != 1 || time.Since(start) > time.Minute {
			t.Errorf("create %s: %+v, want %q", file, r, want)
		}
	}
	if len(e.List()) != 0 || len(e.QEMUs()) != 0 {
		t.Fatal("a refused create left a domain")
	}

	// config check: errors and warnings on stderr in line order, the
	// summary on stdout; --json for linters; --strict as xl.
	lenient := filepath.Join(e.Dir, "lenient.cfg")
	os.WriteFile(lenient, []byte("name = 'len'\nkernel = '/k'\npae = 1\ninitrd = '/i'\n# no newline at the end"), 0o644)
	r = e.RF("config", "check", lenient)
	if r.Code != 0 || !strings.Contains(r.Stdout, lenient+": ok") || strings.Contains(r.Stderr, "pae") ||
		!strings.Contains(r.Stderr, lenient+`:4:1: warning: unknown key "initrd": ignored, as xl ignores it (did you mean ramdisk?`) {
		t.Fatalf("config check: %+v", r)
	}
	r = e.RF("config", "check", "--strict", "--json", lenient, bad)
	var reports []struct {
		File        string
		OK          bool
		Diagnostics []struct {
			Line     int
			Severity string
			Message  string
		}
	}
	if err := json.Unmarshal([]byte(r.Stdout), &reports); err != nil || r.Code != 1 || len(reports) != 2 {
		t.Fatalf("config check --json: %v %+v", err, r)
	}
	if d := reports[0].Diagnostics; reports[0].OK || len(d) != 2 || d[1].Line != 5 || d[1].Severity != "error" || !strings.Contains(d[1].Message, "xl's parser refuses") {
		t.Fatalf("--strict: a final comment with no newline is xl's error: %+v", reports[0])
	}

	for _, c := range []struct{ args, want []string }{
		{[]string{"console", "a b"}, []string{`"a b" is not a valid domain name: ' ' is not allowed`}},
		{[]string{"destroy", ""}, []string{"a name is empty ('')"}},
	} {
		r := e.RF(c.args...)
		if r.Code == 0 || !strings.Contains(r.Stderr, c.want[0]) {
			t.Errorf("ringfence %q: %+v, want %q", c.args, r, c.want[0])
		}
	}
}

// TestFullDiskWording: a full filesystem is said as such, naming it: the
// run dir's at create (not QEMU's "cannot create PID file"), a save
// file's (not QEMU's "Broken pipe"); nothing is left and the guest runs on.
func TestFullDiskWording(t *testing.T) {
	mnt, err := os.MkdirTemp("/tmp", "rffull")
	if err != nil {
		t.Fatal(err)
	}
	run, saves := filepath.Join(mnt, "run"), filepath.Join(mnt, "saves")
	for _, d := range []string{run, saves} {
		os.Mkdir(d, 0o755)
		mustRun(t, "mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", d)
	}
	t.Cleanup(func() {
		for _, d := range []string{run, saves} {
			runOut("umount", d)
		}
		os.RemoveAll(mnt)
	})
	// The socket stays in the scratch dir; the run dir is the small one.
	e := NewEnvWith(t, EnvOptions{ServeArgs: []string{"--run-dir", run}, Before: func(dir string) { os.Mkdir(filepath.Join(dir, "run"), 0o700) }})
	fill := filepath.Join(run, "fill")
	fillUp(t, fill)
	r := e.RF("create", e.WriteConfig("full", ""))
	if r.Code == 0 || !strings.Contains(r.Stderr, "no space left on tmpfs (tmpfs) at "+run+", the filesystem of the run dir") {
		t.Fatalf("create with a full run dir: %+v", r)
	}
	if len(e.List()) != 0 || len(e.QEMUs()) != 0 {
		t.Fatal("a refused create left a domain")
	}
	os.Remove(fill)

	c := e.Boot("full", "")
	r = e.RF("save", "full", filepath.Join(saves, "full.save"))
	if r.Code == 0 || !strings.Contains(r.Stderr, "no space left on tmpfs (tmpfs) at "+saves+", the filesystem of the save file") || strings.Contains(r.Stderr, "Broken pipe") {
		t.Fatalf("save onto a full disk: %+v", r)
	}
	if left, _ := os.ReadDir(saves); len(left) != 0 {
		t.Fatalf("a failed save left %v", left)
	}
	c.Do("echo alive-$((40+2))", "alive-42", 30*time.Second)
	e.MustRF("destroy", "full")
}

// fillUp writes zeros to path until its filesystem is full.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			return
		}
	}
}
