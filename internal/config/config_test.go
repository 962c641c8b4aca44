package config

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/spec"
)

func TestSeedWeb01(t *testing.T) {
	src, err := os.ReadFile("testdata/web01.cfg")
	if err != nil {
		t.Fatal(err)
	}
	s, warns, err := Decode("web01.cfg", src)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "web01_coolvds" || s.MemoryMiB != 1024 || s.MaxMemMiB != 1024 || s.VCPUs != 2 || s.Type != "pv" {
		t.Fatalf("basics wrong: %+v", s)
	}
	if len(s.Disks) != 2 || s.Disks[0].Target != "/dev/VolGroup00/web01_root" || s.Disks[0].VDev != "xvda1" ||
		s.Disks[0].Guest != "vda" || s.Disks[1].Guest != "vdb" || s.Disks[0].Access != "rw" || s.Disks[0].Format != "raw" {
		t.Fatalf("disks wrong: %+v", s.Disks)
	}
	if len(s.Vifs) != 1 || s.Vifs[0].MAC != "00:16:3e:12:34:56" || s.Vifs[0].Bridge != "xenbr0" || s.Vifs[0].IP[0] != "192.168.1.10" {
		t.Fatalf("vif wrong: %+v", s.Vifs)
	}
	if s.Cmdline != "root=/dev/vda ro" {
		t.Fatalf("cmdline %q, want root rewritten to /dev/vda", s.Cmdline)
	}
	if len(warns) != 1 || !strings.Contains(warns[0].String(), "web01.cfg:16:8: warning: root=/dev/xvda1 rewritten") {
		t.Fatalf("warnings %v", warns)
	}
	if s.OnPoweroff != "destroy" || s.OnReboot != "restart" || s.OnCrash != "restart" {
		t.Fatalf("actions wrong: %+v", s)
	}
}

func TestGrammar(t *testing.T) {
	cases := []struct {
		name string
		src  string
		want func(api.DomainSpec) bool
	}{
		{"semicolons and comments", "name='a'; memory=256 # c\nkernel=\"/k\"", func(s api.DomainSpec) bool { return s.MemoryMiB == 256 && s.Kernel == "/k" }},
		{"double quotes with escape", `name = "a"` + "\n" + `kernel = "/k\"x"`, func(s api.DomainSpec) bool { return s.Kernel == `/k"x` }},
		{"quoted number", "name='a'\nkernel='/k'\nmemory='512'", func(s api.DomainSpec) bool { return s.MemoryMiB == 512 }},
		{"multi-line list trailing comma", "name='a'\nkernel='/k'\ndisk=[\n 'file:/a.img,xvda,w',\n # between\n 'file:/b.img,xvdb,r',\n]\n", func(s api.DomainSpec) bool {
			return len(s.Disks) == 2 && s.Disks[1].Access == "ro"
		}},
		{"final comment without newline", "name='a'\nkernel='/k' # end", func(s api.DomainSpec) bool { return s.Name == "a" }},
		{"last assignment wins", "name='a'\nkernel='/k'\nmemory=64\nmemory=96", func(s api.DomainSpec) bool { return s.MemoryMiB == 96 }},
		{"defaults", "name='a'\nkernel='/k'", func(s api.DomainSpec) bool {
			return s.MemoryMiB == 32 && s.VCPUs == 1 && s.OnPoweroff == "destroy" && s.OnReboot == "restart" && s.OnCrash == "destroy"
		}},
		{"maxmem only", "name='a'\nkernel='/k'\nmaxmem=300", func(s api.DomainSpec) bool { return s.MemoryMiB == 300 }},
		{"hvm without kernel", "name='a'\ntype='hvm'\ndisk=['/img,raw,hda,w']", func(s api.DomainSpec) bool { return s.Type == "hvm" && s.Disks[0].Guest == "vda" }},
		{"builder hvm", "name='a'\nbuilder='hvm'\ndisk=['/img,raw,hda,w']", func(s api.DomainSpec) bool { return s.Type == "hvm" }},
		{"extra and root", "name='a'\nkernel='/k'\nroot='/dev/xvda'\nextra='console=hvc0 quiet'\ndisk=['phy:/dev/x,xvda,w']", func(s api.DomainSpec) bool {
			return s.Cmdline == "root=/dev/vda console=ttyS0 quiet"
		}},
		{"generated mac is stable", "name='a'\nkernel='/k'\nvif=['bridge=br0']", func(s api.DomainSpec) bool {
			return s.Vifs[0].MAC == spec.GenerateMAC("a", 0) && strings.HasPrefix(s.Vifs[0].MAC, "00:16:3e:") && s.Vifs[0].Model == "virtio"
		}},
		{"single vif string", "name='a'\nkernel='/k'\nvif='bridge=br0'", func(s api.DomainSpec) bool { return len(s.Vifs) == 1 }},
		{"cdrom", "name='a'\nkernel='/k'\ndisk=[',hdc:cdrom,r']", func(s api.DomainSpec) bool { return s.Disks[0].CDROM && s.Disks[0].Access == "ro" }},
		{"key=value disk", "name='a'\nkernel='/k'\ndisk=['vdev=xvdb,access=r,format=qcow2,target=/x.qcow2']", func(s api.DomainSpec) bool {
			return s.Disks[0].Format == "qcow2" && s.Disks[0].Target == "/x.qcow2"
		}},
		{"tap:qcow2 prefix", "name='a'\nkernel='/k'\ndisk=['tap:qcow2:/x.qcow2,xvda,w']", func(s api.DomainSpec) bool { return s.Disks[0].Format == "qcow2" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _, err := Decode("t.cfg", []byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(s) {
				t.Fatalf("unexpected spec: %+v", s)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"unquoted", "name = web01", "t.cfg:1:8: value \"web01\" must be quoted"},
		{"double equals", "name='a'\nmemory = = 5", "t.cfg:2:10: expected a value"},
		{"unterminated string", "name='a", "t.cfg:1:6: string opened here is not closed"},
		{"unterminated list", "name='a'\ndisk=['x'", "t.cfg:2:6: list opened here is never closed"},
		{"python import", "import os\nname='a'", "legacy xm file"},
		{"python if", "name='a'\nif x:\n  memory=5", "t.cfg:2:4: expected `=`"},
		{"memory range", "name='a'\nkernel='/k'\nmemory=0", "t.cfg:3:8: memory: 0 is out of range"},
		{"memory text", "name='a'\nkernel='/k'\nmemory='lots'", "\"lots\" is not a whole number"},
		{"bad action", "name='a'\nkernel='/k'\non_crash='explode'", "on_crash: \"explode\" is not one of"},
		{"bad name", "name='a/b'", "not a valid domain name"},
		{"no name", "memory=64", "name is required"},
		{"pv needs kernel", "name='a'\ntype='pv'", "needs kernel"},
		{"nothing to boot", "name='a'", "nothing to boot"},
		{"relative kernel", "name='a'\nkernel='vmlinuz'", "must be absolute"},
		{"placeholder mac", "name='a'\nkernel='/k'\nvif=['mac=00:16:3E:XX:XX:XX']", "t.cfg:3:6: vif: mac \"00:16:3E:XX:XX:XX\" is malformed"},
		{"multicast mac", "name='a'\nkernel='/k'\nvif=['mac=01:16:3e:00:00:01']", "multicast"},
		{"swapped disk fields", "name='a'\nkernel='/k'\ndisk=['phy:xvda,/dev/vg/lv,w']", "the vdev goes second"},
		{"bad access", "name='a'\nkernel='/k'\ndisk=['file:/x,xvda,rwx']", "access \"rwx\""},
		{"duplicate vdev", "name='a'\nkernel='/k'\ndisk=['file:/x,xvda,w','file:/y,xvda,w']", "used twice"},
		{"maxmem below memory", "name='a'\nkernel='/k'\nmemory=512\nmaxmem=256", "maxmem (256) is below memory (512)"},
		{"two settings on a line", "name='a' memory=5", "one setting per line"},
		{"control char in cmdline", "name='a'\nkernel='/k'\nextra='a\\nb'", "control character"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Decode("t.cfg", []byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestUnknownKeysWarn(t *testing.T) {
	_, warns, err := Decode("t.cfg", []byte("name='a'\nkernel='/k'\nvfb=['vnc=1']\nxen_platform_pci=1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 2 || !strings.Contains(warns[0].String(), "t.cfg:3:1: warning: \"vfb\" is ignored: write vnc = 1") {
		t.Fatalf("warnings %v", warns)
	}
}

func FuzzDecode(f *testing.F) {
	src, _ := os.ReadFile("testdata/web01.cfg")
	f.Add(string(src))
	f.Add("name='a';kernel='/k'\ndisk=[,]")
	f.Add("name='x'\ntype='hvm'\ndisk=['vdev=hdc,devtype=cdrom']\nvif=['ip=1.2.3.4 5.6.7.8,bridge=br0,model=e1000']")
	f.Fuzz(func(t *testing.T, s string) {
		spec, _, err := Decode("f.cfg", []byte(s)) // must not panic
		if err != nil {
			return
		}
		// Export then parse gives the same spec.
		again, _, err := Decode("export.cfg", []byte(Format(spec)))
		if err != nil {
			t.Fatalf("exported file does not parse: %v\n%s", err, Format(spec))
		}
		if !reflect.DeepEqual(spec, again) {
			t.Fatalf("round trip changed the spec:\n%+v\n%+v\n%s", spec, again, Format(spec))
		}
	})
}

func TestAppendOctalCase(t *testing.T) {
	s, warns, err := Decode("t.cfg", []byte("name='a'\nkernel='/k'\nextra='quiet'\nextra+=' console=hvc0'\ndisk=['file:/a,xvda,w']\ndisk+=['file:/b,xvdb,w']\nmemory=0400\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Cmdline != "quiet console=ttyS0" || len(s.Disks) != 2 || s.MemoryMiB != 256 {
		t.Fatalf("spec %+v", s)
	}
	if len(warns) != 2 || !strings.Contains(warns[0].String(), "t.cfg:3:7: warning: console=hvc0 rewritten to console=ttyS0") ||
		!strings.Contains(warns[1].String(), "t.cfg:7:8: warning: memory = 0400: a leading 0 makes it octal in xl (256)") {
		t.Fatalf("warnings %v", warns)
	}
	if _, _, err := Decode("t.cfg", []byte("name='a'\nMemory=5")); err == nil || !strings.Contains(err.Error(), `t.cfg:2:1: setting names are lower case in xl.cfg: write "memory"`) {
		t.Fatalf("upper-case key: %v", err)
	}
	if _, _, err := Decode("t.cfg", []byte("name='a'\nmemory=5\nmemory+=6")); err == nil || !strings.Contains(err.Error(), "+= appends") {
		t.Fatalf("+= on a number: %v", err)
	}
	s, _, err = Decode("t.cfg", []byte(`name='a'`+"\nkernel='/k'\nextra=\"x\\x41\\101\"\n"))
	if err != nil || s.Cmdline != "xAA" {
		t.Fatalf("escapes: %q %v", s.Cmdline, err)
	}
}

func TestExportRoundTrip(t *testing.T) {
	src, _ := os.ReadFile("testdata/web01.cfg")
	spec, _, err := Decode("web01.cfg", src)
	if err != nil {
		t.Fatal(err)
	}
	again, warns, err := Decode("export.cfg", []byte(Format(spec)))
	if err != nil || len(warns) != 0 || !reflect.DeepEqual(spec, again) {
		t.Fatalf("round trip: %v %v\n%s", err, warns, Format(spec))
	}
	if sum := strings.Join(Summary(spec), "\n"); !strings.Contains(sum, "disk xvda1 -> /dev/vda: virtio-blk /dev/VolGroup00/web01_root, raw, rw") {
		t.Fatal(sum)
	}
}

func TestMoreKeys(t *testing.T) {
	src := `name='k'
bootloader='/usr/bin/pygrub'
disk=['phy:/dev/vg/k,xvda,w']
cpus='0-3,^1'
cpu_weight=512
cap=50
boot='dc'
localtime=1
rtc_timeoffset='-3600'
on_watchdog='coredump-restart'
on_crash='soft-reset'
vif=['mac=00:16:3e:00:00:01,bridge=xenbr0,rate=10Mb/s,vifname=web.0,type=ioemu,script=vif-bridge']
vnc=1
usbdevice='tablet'
`
	s, warns, err := Decode("t.cfg", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if s.Bootloader != "/usr/bin/pygrub" || s.Kernel != "" || s.CPUs != "0-3,^1" || s.CPUWeight != 512 || s.Cap != 50 ||
		s.Boot != "dc" || !s.Localtime || s.RTCOffsetSec != -3600 || s.OnWatchdog != "coredump-restart" || s.OnCrash != "soft-reset" {
		t.Fatalf("spec %+v", s)
	}
	v := s.Vifs[0]
	if v.Rate != "10Mb/s" || v.RateBytes != 62500 || v.RateIntervalUS != 50000 || v.VifName != "web.0" || v.Type != "ioemu" {
		t.Fatalf("vif %+v", v)
	}
	if len(warns) != 1 || !strings.Contains(warns[0].String(), `"usbdevice" is ignored`) || !s.VNC {
		t.Fatalf("warnings %v", warns)
	}
	again, _, err := Decode("x.cfg", []byte(Format(s)))
	if err != nil || !reflect.DeepEqual(s, again) {
		t.Fatalf("round trip: %v\n%s", err, Format(s))
	}
	for _, bad := range []string{"cpus='0-3;x'", "cpu_weight=0", "cap=-1", "boot='z'", "bootloader='grub2'", "vif=['rate=fast']", "vif=['ip=10.0.0.300']", "vif=['ip=fe80::1%eth0']", "vif=['vifname=this-name-is-too-long']", "on_crash='explode'"} {
		if _, _, err := Decode("t.cfg", []byte("name='b'\nkernel='/k'\n"+bad)); err == nil || !strings.Contains(err.Error(), "t.cfg:3:") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// Faults found by injection: an over-long command line is refused where it
// is written (the guest would drop the console= Ringfence appends), and
// two NICs of one domain cannot share a MAC.
func TestCmdlineAndMACLimits(t *testing.T) {
	long := strings.Repeat("a", spec.MaxCmdline+1)
	_, _, err := Decode("x.cfg", []byte("name = 'x'\nkernel = '/k'\nmemory = 64\nextra = '"+long+"'\n"))
	if err == nil || !strings.Contains(err.Error(), "x.cfg:4:9:") || !strings.Contains(err.Error(), "cut it off") {
		t.Errorf("a long command line: %v", err)
	}
	if _, _, err := Decode("x.cfg", []byte("name = 'x'\nkernel = '/k'\nextra = '"+strings.Repeat("a", spec.MaxCmdline-10)+"'\n")); err != nil {
		t.Errorf("a command line within the limit: %v", err)
	}
	_, _, err = Decode("x.cfg", []byte("name = 'x'\nkernel = '/k'\nvif = [ 'mac=00:16:3e:00:00:01', 'mac=00:16:3E:00:00:01' ]\n"))
	if err == nil || !strings.Contains(err.Error(), "vif 1: mac 00:16:3e:00:00:01 is vif 0's too") {
		t.Errorf("two vifs with one MAC: %v", err)
	}
}

func TestApplySettings(t *testing.T) {
	s := api.DomainSpec{Name: "c", Kernel: "/k", MemoryMiB: 256, VCPUs: 2}
	if err := spec.Normalize(&s); err != nil {
		t.Fatal(err)
	}
	if err := ApplySettings(&s, []string{"memory=512", "cpu_weight=512", "on_crash=preserve"}); err != nil {
		t.Fatal(err)
	}
	if s.MemoryMiB != 512 || s.MaxMemMiB != 512 || s.CPUWeight != 512 || s.OnCrash != "preserve" {
		t.Fatalf("%+v", s)
	}
	before := s
	for _, bad := range [][]string{{"memory=-1"}, {"name=x"}, {"disk=x"}, {"vcpus"}, {"cap=abc"}} {
		if err := ApplySettings(&s, bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
		if s.MemoryMiB != before.MemoryMiB || s.Name != before.Name {
			t.Fatalf("%v changed the spec", bad)
		}
	}
}
