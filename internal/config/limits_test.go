package config

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLimits: what is not a domain file is refused with the place and
// why, without reading it whole or recursing without end.
func TestLimits(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"NUL in a value", "name = 'a'\nkernel = '/k'\non_crash = 'pre\x00serve'\n", "t.cfg:3:16: a NUL byte"},
		{"NUL ends nothing silently", "name = 'a'\x00\non_crash = 'restart'\n", "t.cfg:1:11: a NUL byte"},
		{"too big", "name = 'a'\n" + strings.Repeat("#", MaxFileSize), "t.cfg: 1048587 bytes or more, over the 1048576"},
		{"a million [", "name = 'a'\nvif = " + strings.Repeat("[", 1000000), "t.cfg:2:15: lists nested 9 deep"},
		{"nesting within the limit is read", "name = 'a'\nvnuma = [[[[[[[['x']]]]]]]]\n", "t.cfg:2:1: warning"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, warns, err := Decode("t.cfg", []byte(tc.src))
			got := err
			if strings.Contains(tc.want, "warning") {
				if len(warns) == 0 || !strings.Contains(warns[0].String(), tc.want) {
					t.Fatalf("warnings %v, error %v, want %q", warns, err, tc.want)
				}
				return
			}
			if got == nil || !strings.Contains(got.Error(), tc.want) {
				t.Fatalf("error %v, want %q", got, tc.want)
			}
		})
	}
	// Load reads no more than it may: /dev/zero is refused, not read.
	if _, _, err := Load("/dev/zero"); err == nil || !strings.Contains(err.Error(), "/dev/zero: 1048577 bytes or more") {
		t.Fatalf("/dev/zero: %v", err)
	}
	if _, _, err := LoadOverrides("/dev/zero", []string{"memory=64"}); err == nil || !strings.Contains(err.Error(), "/dev/zero: 1048577 bytes or more") {
		t.Fatalf("/dev/zero with an override: %v", err)
	}
}

// TestLimitsRandom feeds the reader random and mangled text: it never
// panics, never reports more than MaxErrors (+1 for stopping) errors,
// and every error names a line.
func TestLimitsRandom(t *testing.T) {
	src, _ := os.ReadFile("testdata/web01.cfg")
	rng := rand.New(rand.NewSource(18))
	alphabet := []byte("[]'\",=#;\\\n\x00 \tax0-+")
	for i := 0; i < 3000; i++ {
		b := append([]byte(nil), src...)
		for j := rng.Intn(40); j > 0; j-- {
			p := rng.Intn(len(b))
			b[p] = alphabet[rng.Intn(len(alphabet))]
		}
		if i%10 == 0 {
			b = bytes.Repeat([]byte{alphabet[rng.Intn(len(alphabet))]}, rng.Intn(100000))
		}
		_, _, err := Decode("r.cfg", b)
		var es Errors
		if err == nil {
			continue
		}
		if !asErrors(err, &es) {
			t.Fatalf("error is %T, not Errors: %v", err, err)
		}
		if len(es) > MaxErrors+1 {
			t.Fatalf("%d errors", len(es))
		}
		for k, e := range es {
			if e.Pos.File != "r.cfg" || e.Msg == "" {
				t.Fatalf("error without its file or message: %v\n%q", e, b)
			}
			if k > 0 && e.Pos.before(es[k-1].Pos) {
				t.Fatalf("errors out of line order: %v", es)
			}
		}
	}
}

func asErrors(err error, es *Errors) bool {
	e, ok := err.(Errors)
	*es = e
	return ok
}

// TestEveryErrorInOrder: a file's errors all come, in line order, each at
// its own line; one comparing two settings is at the later one's.
func TestEveryErrorInOrder(t *testing.T) {
	src := "name = 'a'\nmemory = 'lots'\nkernel = 'vmlinuz'\nvif = [ 'vlan=10', 'mac=00:16:3e:00:00:01' ]\ndisk = [ 'foo:/x,xvda,w' ]\n"
	_, _, err := Decode("t.cfg", []byte(src))
	want := []string{"t.cfg:2:10: memory:", "t.cfg:3:10: kernel:", "t.cfg:4:9: vif: vlan=10", "t.cfg:5:10: disk: unknown prefix \"foo:\""}
	es, _ := err.(Errors)
	if len(es) != len(want) {
		t.Fatalf("errors %v, want %d", err, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(es[i].Error(), w) {
			t.Errorf("error %d: %v, want %q", i, es[i], w)
		}
	}
	later := map[string]string{
		"memory = 512\nname = 'a'\nkernel = '/k'\nmaxmem = 256\n":                                                   "t.cfg:4:10: maxmem (256) is below memory (512)",
		"name = 'a'\nkernel = '/k'\nmaxmem = 256\n\nmemory = 512\n":                                                 "t.cfg:5:10: maxmem (256) is below memory (512)",
		"name = 'a'\nkernel = '/k'\nvcpus = 4\nmaxvcpus = 2\n":                                                      "t.cfg:4:12: maxvcpus (2) is below vcpus (4)",
		"name = 'a'\nkernel = '/k'\nvif = [ 'mac=00:16:3e:00:00:01',\n 'mac=00:16:3E:00:00:01' ]\n":                 "t.cfg:4:2: vif 1: mac 00:16:3e:00:00:01 is vif 0's too",
		"name = 'a'\ntype = 'pv'\nmemory = 64\n":                                                                    "t.cfg:2:8: type \"pv\" needs kernel",
		"name = 'a'\nkernel = '/k'\ndisk = [ '/a,raw,xvda,w',\n '/b,raw,xvda,w' ]\n":                                "t.cfg:4:2: disk: vdev \"xvda\" is used twice",
		"name = 'a'\nkernel = '/k'\nextra = '" + strings.Repeat("x", 2040) + "'\n":                                  "t.cfg:3:9: cmdline: 2040 bytes",
		"name = 'a'\nkernel = '/k'\nextra = 'quiet'\ncmdline = 'root=/dev/vda " + strings.Repeat("x", 2040) + "'\n": "t.cfg:4:11: cmdline:",
	}
	for src, w := range later {
		if _, _, err := Decode("t.cfg", []byte(src)); err == nil || !strings.HasPrefix(err.Error(), w) {
			t.Errorf("%q: %v, want %q", src[:min(len(src), 60)], err, w)
		}
	}
}

// TestStrict: what only xl's own parser refuses is a warning, and an
// error under Strict.
func TestStrict(t *testing.T) {
	for src, want := range map[string]string{
		"name = 'a'\nkernel = '/k'\n# the end":                     "t.cfg:3:1: the file ends in a comment with no newline",
		"name = 'a'\nkernel = '/k'\nrtc_timeoffset = -3600\n":      "t.cfg:3:18: an unquoted negative number",
		"name = 'a'\nkernel = '/k'\nextra = 'a\\:b'\n":             "t.cfg:3:12: the escape \\:",
		"name = 'a'\nkernel = '/k'\ndisk = [ '/a,raw,xvda,w!' ]\n": "t.cfg:3:10: access w! (xm's shared-writable, which xl refuses)",
		"name = 'a'\nkernel = '/k'\nextra = 'a' \\\n":              "t.cfg:3:13: a backslash line continuation",
	} {
		if _, warns, err := Decode("t.cfg", []byte(src)); err != nil || len(warns) == 0 || !strings.Contains(warns[0].String(), strings.Replace(want, ": ", ": warning: ", 1)) {
			t.Errorf("lenient %q: %v %v, want a warning %q", src, err, warns, want)
		}
		if _, _, err := DecodeWith("t.cfg", []byte(src), Options{Strict: true}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("strict %q: %v, want %q", src, err, want)
		}
	}
}

// TestXLNumbersAndValues: numbers as xl reads them, quoted or not, and
// values xl takes that a stricter reader would refuse.
func TestXLNumbersAndValues(t *testing.T) {
	s, warns, err := Decode("t.cfg", []byte("name = 123\nkernel = '/k'\nmemory = '0x100'\nvcpus = \"04\"\nmaxvcpus = '010'\ncap = 0\n"))
	if err != nil || s.Name != "123" || s.MemoryMiB != 256 || s.VCPUs != 4 || s.MaxVCPUs != 8 {
		t.Fatalf("%+v %v", s, err)
	}
	if len(warns) != 2 || !strings.Contains(warns[1].String(), `t.cfg:5:12: warning: "010": a leading 0 makes it octal in xl (8)`) {
		t.Fatalf("warnings %v", warns)
	}
	for _, bad := range []string{"memory = '512M'", "memory = '08'", "memory = 1.5", "memory = 0b101", "memory = '1_024'", "memory = '--5'"} {
		if _, _, err := Decode("t.cfg", []byte("name = 'a'\nkernel = '/k'\n"+bad+"\n")); err == nil || !strings.Contains(err.Error(), "t.cfg:3:") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// TestWarningsSayMeaning: Xen settings with no effect here are said,
// unless their value is what happens anyway; unknown keys are said to be
// unknown; a key set twice is said.
func TestWarningsSayMeaning(t *testing.T) {
	quiet := "name = 'a'\nkernel = '/k'\npae = 1\nacpi = 1\napic = 1\nsdl = 0\nviridian = 0\npci = []\nserial = 'pty'\nhap = 1\n"
	if _, warns, err := Decode("t.cfg", []byte(quiet)); err != nil || len(warns) != 0 {
		t.Fatalf("honoured settings warned: %v %v", warns, err)
	}
	loud := "name = 'a'\nkernel = '/k'\nacpi = 0\npci = [ '01:00.0' ]\nfrobnicate = 1\nkernel = '/k2'\ndisk = 'phy:/dev/x,xvda,w'\n" +
		"vif = [ 'script=vif-route,backend=dd' ]\nextra = 'console=hvc0'\n"
	_, warns, err := Decode("t.cfg", []byte(loud))
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, w := range warns {
		all = append(all, w.String())
	}
	got := strings.Join(all, "\n")
	for _, w := range []string{
		`t.cfg:3:1: warning: "acpi" is ignored: ACPI is always on`,
		`t.cfg:4:1: warning: "pci" is ignored: PCI passthrough`,
		`t.cfg:5:1: warning: unknown key "frobnicate": ignored, as xl ignores it`,
		`t.cfg:6:1: warning: kernel is set again (first at line 2): the last setting wins`,
		`t.cfg:7:8: warning: disk = '...' is a single string, not a list: xl ignores it`,
		`t.cfg:8:9: warning: script=vif-route is not run`,
		`t.cfg:8:9: warning: backend=dd (a Xen driver domain) is not used`,
		`t.cfg:9:9: warning: console=hvc0 rewritten to console=ttyS0`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("no %q in:\n%s", w, got)
		}
	}
}

// TestFragment: a file with devices and no name (appended to a machine
// file by its users) is refused as xl refuses it, its settings checked.
func TestFragment(t *testing.T) {
	s, _, err := Decode("frag.cfg", []byte("disk = [ 'backend=DomD, phy:/dev/sdc, xvda1' ]\nvif = [ 'bridge=xenbr0' ]\n"))
	if err == nil || len(err.(Errors)) != 1 || !strings.Contains(err.Error(), "frag.cfg:1:1: name is required") || !strings.Contains(err.Error(), "cat machine.cfg frag.cfg") {
		t.Fatalf("fragment: %v", err)
	}
	if s.Type != "pv" || len(s.Disks) != 1 || s.Disks[0].Format != "raw" || len(s.Vifs) != 1 || s.Vifs[0].Model != "virtio" || s.OnCrash != "destroy" {
		t.Fatalf("fragment read as %+v", s)
	}
	if _, _, err := Decode("frag.cfg", []byte("vif = [ 'mac=01:00:00:00:00:00' ]\n")); err == nil || len(err.(Errors)) != 2 {
		t.Fatalf("a fragment's own errors are said too: %v", err)
	}
}

// TestBootSector: a pygrub domain whose first disk has no boot sector is
// said to be one the firmware cannot boot.
func TestBootSector(t *testing.T) {
	dir := t.TempDir()
	img, mbr := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mbr.img")
	os.WriteFile(img, make([]byte, 4096), 0o600)
	b := make([]byte, 4096)
	b[510], b[511] = 0x55, 0xAA
	os.WriteFile(mbr, b, 0o600)
	for target, want := range map[string]bool{img: true, mbr: false} {
		cfg := filepath.Join(dir, "d.cfg")
		os.WriteFile(cfg, []byte("name = 'a'\nbootloader = 'pygrub'\ndisk = [ 'file:"+target+",xvda,w' ]\n"), 0o600)
		_, warns, err := Load(cfg)
		said := len(warns) == 1 && strings.Contains(warns[0].Msg, "has no boot sector")
		if err != nil || said != want {
			t.Errorf("%s: %v %v", target, warns, err)
		}
	}
}
