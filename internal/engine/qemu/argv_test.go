package qemu

import (
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/engine"
)

func TestArgv(t *testing.T) {
	base := engine.LaunchSpec{Name: "web01", Accel: "tcg", MemoryMiB: 256, VCPUs: 2, MaxVCPUs: 4,
		Kernel: "/k", Initrd: "/i", Cmdline: "root=/dev/vda console=ttyS0,115200", RunDir: "/run/rf/web01"}
	cases := []struct {
		name  string
		mod   func(*engine.LaunchSpec)
		want  []string // substrings of the joined argv, in order
		avoid []string
	}{
		{"direct kernel boot", func(*engine.LaunchSpec) {}, []string{
			"-machine q35 -accel tcg,tb-size=64", "-m size=256M", "-smp cpus=2,maxcpus=4", "-no-reboot", "-S",
			"-chardev socket,id=qmp,path=/run/rf/web01/qmp.sock,server=on,wait=off",
			"-serial chardev:serial0", "-sandbox on,",
			"-kernel /k", "-initrd /i", "-append root=/dev/vda console=ttyS0,115200"}, []string{"-cpu host", "-boot", "-vnc", "VGA"}},
		// VNC: a unix socket in the run dir, never a TCP port; the
		// password is set over QMP, never on the command line.
		{"vnc", func(s *engine.LaunchSpec) { s.VNC = true }, []string{"-display none",
			"-device VGA,id=video0", "-vnc unix:/run/rf/web01/vnc.sock,share=force-shared"}, []string{"password", "0.0.0.0", "127.0.0.1", ":59"}},
		{"vnc with password", func(s *engine.LaunchSpec) { s.VNC, s.VNCPassword = true, true }, []string{
			"-vnc unix:/run/rf/web01/vnc.sock,share=force-shared,password=on"}, nil},
		{"vnc socket path with a comma", func(s *engine.LaunchSpec) { s.VNC, s.RunDir = true, "/run/a,b" }, []string{
			"-vnc unix:/run/a,,b/vnc.sock,share"}, nil},
		{"kvm uses host cpu", func(s *engine.LaunchSpec) { s.Accel = "kvm" }, []string{"-accel kvm", "-cpu host"}, nil},
		{"firmware boot", func(s *engine.LaunchSpec) {
			s.Kernel, s.Initrd, s.Cmdline = "", "", ""
			s.Disks = []engine.Disk{{ID: "vda", Path: "/d.img", Format: "raw"}}
		}, []string{"-boot order=c", "-device virtio-blk-pci,drive=drive-vda,id=vda,bootindex=1"}, []string{"-kernel"}},
		{"boot order and rtc", func(s *engine.LaunchSpec) {
			s.Kernel, s.Initrd, s.Cmdline, s.Boot, s.RTCBase = "", "", "", "dc", "localtime"
			s.Disks = []engine.Disk{{ID: "vda", Path: "/d.img", Format: "vhd"}}
		}, []string{"-boot order=dc", "-rtc base=localtime", "format=vpc"}, []string{"bootindex"}},
		{"comma in path is escaped", func(s *engine.LaunchSpec) {
			s.Disks = []engine.Disk{{ID: "vda", Path: "/a,b/d.img,format=qcow2", Format: "raw", ReadOnly: true}}
		}, []string{"file=/a,,b/d.img,,format=qcow2,readonly=on"}, nil},
		{"qcow2 and cdrom", func(s *engine.LaunchSpec) {
			s.Disks = []engine.Disk{{ID: "vda", Path: "/x.qcow2", Format: "qcow2"}, {ID: "vdb", Format: "raw", CDROM: true, ReadOnly: true}}
		}, []string{"format=qcow2", "-device ide-cd,drive=drive-vdb"}, nil},
		{"nics", func(s *engine.LaunchSpec) {
			s.NICs = []engine.NIC{{ID: "net0", Tap: "vif3.0", MAC: "00:16:3e:00:00:01", Model: "virtio"}, {ID: "net1", Tap: "vif3.1", MAC: "00:16:3e:00:00:02", Model: "e1000"}}
		}, []string{"-netdev tap,id=net-net0,ifname=vif3.0,script=no,downscript=no", "-device virtio-net-pci,netdev=net-net0,mac=00:16:3e:00:00:01", "-device e1000,netdev=net-net1"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := base
			tc.mod(&s)
			argv, err := argv("qemu-system-x86_64", s)
			if err != nil {
				t.Fatal(err)
			}
			joined := strings.Join(argv, " ")
			pos := 0
			for _, w := range tc.want {
				i := strings.Index(joined[pos:], w)
				if i < 0 {
					t.Fatalf("argv lacks %q (in order):\n%s", w, joined)
				}
				pos += i
			}
			for _, a := range tc.avoid {
				if strings.Contains(joined, a) {
					t.Fatalf("argv has %q:\n%s", a, joined)
				}
			}
		})
	}
}

func TestArgvRejects(t *testing.T) {
	for _, s := range []engine.LaunchSpec{
		{Name: "a", Accel: "xen", MemoryMiB: 1, VCPUs: 1},
		{Name: "a", Accel: "tcg", MemoryMiB: 0, VCPUs: 1},
		{Name: "a", Accel: "tcg", MemoryMiB: 1, VCPUs: 1, Disks: []engine.Disk{{ID: "vda", Path: "rel.img"}}},
		{Name: "a", Accel: "tcg", MemoryMiB: 1, VCPUs: 1, NICs: []engine.NIC{{ID: "n", Model: "ne2k"}}},
	} {
		if _, err := argv("q", s); err == nil {
			t.Errorf("accepted %+v", s)
		}
	}
}

// The overhead model and the argv agree on the translation buffer, and
// the figure grows with RAM and vCPUs.
func TestOverheadModel(t *testing.T) {
	e := New("")
	small := e.OverheadMiB(engine.LaunchSpec{Accel: "tcg", MemoryMiB: 128, VCPUs: 1})
	big := e.OverheadMiB(engine.LaunchSpec{Accel: "tcg", MemoryMiB: 512, VCPUs: 2, MaxVCPUs: 2})
	if small != tcgFixedMiB+32+8+4 || big != tcgFixedMiB+128+16+16 {
		t.Fatalf("model: 128 MiB/1 vCPU %d, 512 MiB/2 vCPUs %d", small, big)
	}
	if vnc := e.OverheadMiB(engine.LaunchSpec{Accel: "tcg", MemoryMiB: 128, VCPUs: 1, VNC: true}); vnc != small+displayMiB {
		t.Fatalf("a VNC display is counted: %d, want %d", vnc, small+displayMiB)
	}
	if kvm := e.OverheadMiB(engine.LaunchSpec{Accel: "kvm", MemoryMiB: 512, VCPUs: 2}); kvm >= big {
		t.Fatalf("KVM needs no translation buffer: %d", kvm)
	}
	argv, err := e.Argv(engine.LaunchSpec{Name: "x", Accel: "tcg", MemoryMiB: 512, VCPUs: 1, RunDir: "/r", Kernel: "/k"})
	if err != nil || !strings.Contains(strings.Join(argv, " "), "-accel tcg,tb-size=128") {
		t.Fatalf("argv %v %v", argv, err)
	}
	// -kernel and -initrd are taken whole by QEMU: never comma-escaped.
	argv, _ = e.Argv(engine.LaunchSpec{Name: "x", Accel: "tcg", MemoryMiB: 64, VCPUs: 1, RunDir: "/r", Kernel: "/a,b=c/k", Initrd: "/a,b/i"})
	if s := strings.Join(argv, " "); !strings.Contains(s, "-kernel /a,b=c/k") || !strings.Contains(s, "-initrd /a,b/i") {
		t.Fatalf("argv %s", s)
	}
}
