package spec

import (
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

func TestDiskSpecs(t *testing.T) {
	cases := []struct {
		spec                         string
		target, vdev, access, format string
		cdrom                        bool
		warn                         string
	}{
		{"/dev/vg/lv,,xvda", "/dev/vg/lv", "xvda", "rw", "", false, ""},
		{"/dev/vg/lv,raw,xvda,rw", "/dev/vg/lv", "xvda", "rw", "raw", false, ""},
		{"format=raw,vdev=xvda,access=rw,target=/dev/vg/lv", "/dev/vg/lv", "xvda", "rw", "raw", false, ""},
		{"vdev=xvdb,target=/srv/a,b.img", "/srv/a,b.img", "xvdb", "rw", "", false, ""},
		{"phy:/dev/VolGroup00/web01_root,xvda1,w", "/dev/VolGroup00/web01_root", "xvda1", "rw", "", false, ""},
		{"phy:hda1,hda,r", "/dev/hda1", "hda", "ro", "", false, ""},
		{"file:/srv/x.img,xvda,w", "/srv/x.img", "xvda", "rw", "", false, ""},
		{"tap:aio:/srv/x.img,xvda,w", "/srv/x.img", "xvda", "rw", "", false, ""},
		{"tap2:aio:/srv/x.img,xvda,w", "/srv/x.img", "xvda", "rw", "", false, ""},
		{"tap:qcow2:/srv/x.qcow2,xvda,w", "/srv/x.qcow2", "xvda", "rw", "qcow2", false, ""},
		{"vhd:/srv/x.vhd,hda,w", "/srv/x.vhd", "hda", "rw", "vhd", false, ""},
		{"file:/srv/x.iso,hdc:cdrom,r", "/srv/x.iso", "hdc", "ro", "", true, ""},
		{",hdc:cdrom,r", "", "hdc", "ro", "", true, ""},
		{"vdev=hdc,devtype=cdrom,target=/x.iso", "/x.iso", "hdc", "ro", "", true, ""},
		{"phy:/dev/sdb,xvdb,w!", "/dev/sdb", "xvdb", "rw", "", false, "w!"},
		{"phy:/dev/sdb,xvdb,w,iops=500,bps=50m", "/dev/sdb", "xvdb", "rw", "", false, ""},
		// libxlu's splitting: an empty item is an empty field, the comma
		// that ends the spec makes none, blanks before an item are skipped.
		{"/dev/vg/lv,,hdb,,", "/dev/vg/lv", "hdb", "rw", "", false, ""},
		{"/dev/vg/lv,raw,xvda,rw,", "/dev/vg/lv", "xvda", "rw", "raw", false, ""},
		{"backend=DomD, phy:/dev/sdc, xvda1", "/dev/sdc", "xvda1", "rw", "", false, "backend=DomD"},
		{"/dev/vg/lv,raw,xvda,w,backendtype=phy,trusted", "/dev/vg/lv", "xvda", "rw", "raw", false, ""},
		{"untrusted,format=qcow2,vdev=xvdb,target=/srv/a.qcow2", "/srv/a.qcow2", "xvdb", "rw", "qcow2", false, ""},
		{"/dev/vg/lv,raw,hda,w,backendtype=phy,", "/dev/vg/lv", "hda", "rw", "raw", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.spec, func(t *testing.T) {
			d, notes, err := ParseDisk(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			warn := ""
			for _, n := range notes {
				warn += n.Msg
			}
			if d.Target != tc.target || d.VDev != tc.vdev || d.Access != tc.access || d.Format != tc.format || d.CDROM != tc.cdrom {
				t.Fatalf("got %+v", d)
			}
			if !strings.Contains(warn, tc.warn) || (tc.warn == "" && warn != "") {
				t.Fatalf("warning %q", warn)
			}
		})
	}
	bad := map[string]string{
		"/dev/vg/lv,xvda1,w":              "without a prefix the fields are TARGET,FORMAT,VDEV,ACCESS",
		"iscsi:iqn.2001-05.com.x,xvda,w":  "block-iscsi hotplug script",
		"foo:/x,xvda,w":                   `unknown prefix "foo:"`,
		"phy:/x,xvda,w,dom0":              "xm's 4th backend-domain field",
		"file:/x,xvda,w,script=y":         "not run on KVM",
		"/x,raw,xvda,rw,,":                "5 positional fields",
		"phy:/x,xvda,w,script=block-nbd":  "nbd-client HOST PORT",
		"nbd:10.0.0.1 20004,hda1,w":       "nbd: targets are reached by Xen's block-nbd hotplug script",
		"drbd:r0,xvda,w":                  "drbdadm up",
		"vdev=xvda,target=rbd:pool/img":   "rbd map POOL/IMAGE",
		"rbd:/x,xvda,w":                   `rbd: targets`,
		"format=vmdk,vdev=xvda,target=/x": `format "vmdk"`,
		"phy:/x,xvda,w,iops=fast":         "iops=fast",
		"phy:/x,xvda,w,bps=-1":            "bps=-1",
	}
	for spec, want := range bad {
		if _, _, err := ParseDisk(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", spec, err, want)
		}
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		rate      string
		bytes, us int64
	}{
		{"1MB/s@20ms", 20000, 20000}, {"100Kb/s", 625, 50000}, {"1GB/s@1s", 1e9, 1e6},
	} {
		b, us, err := ParseRate(tc.rate)
		if err != nil || b != tc.bytes || us != tc.us {
			t.Errorf("%s: %d per %d us, %v", tc.rate, b, us, err)
		}
	}
}

// A spec from the JSON API, a restore or a migration header gets the same
// rules as a domain file; each error names the JSON field.
func TestNormalizeFields(t *testing.T) {
	base := func() api.DomainSpec {
		return api.DomainSpec{Name: "v", Kernel: "/k", MemoryMiB: 128}
	}
	for _, tc := range []struct {
		field string
		set   func(s *api.DomainSpec)
	}{
		{"memory_mib", func(s *api.DomainSpec) { s.MemoryMiB = -5 }},
		{"memory_mib", func(s *api.DomainSpec) { s.MemoryMiB = 8 }},
		{"maxmem_mib", func(s *api.DomainSpec) { s.MaxMemMiB = -1 }},
		{"vcpus", func(s *api.DomainSpec) { s.VCPUs = 256 }},
		{"cpu_weight", func(s *api.DomainSpec) { s.CPUWeight = 70000 }},
		{"cpu_weight", func(s *api.DomainSpec) { s.CPUWeight = -1 }},
		{"cap", func(s *api.DomainSpec) { s.Cap = -1 }},
		{"hotplug_slots", func(s *api.DomainSpec) { s.HotplugSlots = 9 }},
		{"accel", func(s *api.DomainSpec) { s.Accel = "xen" }},
		{"type", func(s *api.DomainSpec) { s.Type = "container" }},
		{"uuid", func(s *api.DomainSpec) { s.UUID = "not-a-uuid" }},
		{"on_watchdog", func(s *api.DomainSpec) { s.OnWatchdog = "explode" }},
		{"boot", func(s *api.DomainSpec) { s.Boot = "z" }},
		{"disks[0].iops", func(s *api.DomainSpec) { s.Disks = []api.Disk{{Target: "/d", VDev: "xvda", IOPS: -1}} }},
		{"disks[0].bps", func(s *api.DomainSpec) { s.Disks = []api.Disk{{Target: "/d", VDev: "xvda", BPS: -1}} }},
		{"disks[0].vdev", func(s *api.DomainSpec) { s.Disks = []api.Disk{{Target: "/d", VDev: "x y"}} }},
		{"disks[0].vdev", func(s *api.DomainSpec) { s.Disks = []api.Disk{{Target: "/d"}} }},
		{"disks[0].port", func(s *api.DomainSpec) { s.Disks = []api.Disk{{Target: "/d", VDev: "xvda", Port: "pcie.0"}} }},
		{"vifs[0].vifname", func(s *api.DomainSpec) { s.Vifs = []api.Vif{{VifName: "a;b"}} }},
		{"vifs[0].type", func(s *api.DomainSpec) { s.Vifs = []api.Vif{{Type: "netfront"}} }},
		{"vifs[0].ip", func(s *api.DomainSpec) { s.Vifs = []api.Vif{{IP: []string{"10.0.0.300"}}} }},
		{"vifs[0].rate_bytes", func(s *api.DomainSpec) { s.Vifs = []api.Vif{{RateBytes: -1}} }},
		{"vifs[0].rate", func(s *api.DomainSpec) { s.Vifs = []api.Vif{{RateBytes: 100, RateIntervalUS: 50000}} }},
		{"vifs[0].rate", func(s *api.DomainSpec) { s.Vifs = []api.Vif{{Rate: "10Mb/s", RateBytes: 1}} }},
	} {
		s := base()
		tc.set(&s)
		err := Normalize(&s)
		if err == nil || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("%s: %v", tc.field, err)
		}
	}
	s := base()
	s.Vifs = []api.Vif{{Rate: "10Mb/s"}}
	b, us, _ := ParseRate("10Mb/s")
	s.Vifs[0].RateBytes, s.Vifs[0].RateIntervalUS = b, us
	if err := Normalize(&s); err != nil {
		t.Errorf("a consistent rate: %v", err)
	}
}

func TestParseVif(t *testing.T) {
	v, notes, err := ParseVif("mac=00:16:3E:00:00:0A, bridge=br0,,ip=10.0.0.5 2001:db8::5,rate=10Mb/s,script=/etc/xen/scripts/vif-bridge,untrusted,mtu=0x5dc,")
	if err != nil {
		t.Fatal(err)
	}
	if v.MAC != "00:16:3e:00:00:0a" || v.Bridge != "br0" || len(v.IP) != 2 || v.RateBytes != 62500 || v.RateIntervalUS != 50000 || v.MTU != 1500 || len(notes) != 0 {
		t.Fatalf("vif %+v %v", v, notes)
	}
	if v, _, err := ParseVif(" "); err != nil || v.MAC != "" {
		t.Fatalf("an empty vif: %+v %v", v, err)
	}
	for spec, want := range map[string]string{
		"script=vif-openvswitch,bridge=ovs0": "script=vif-openvswitch is not run",
		"backend=DomD,bridge=xenbr0":         "backend=DomD (a Xen driver domain) is not used",
		"gatewaydev=eth0":                    "vif-route/vif-nat",
	} {
		if _, notes, err := ParseVif(spec); err != nil || len(notes) != 1 || !strings.Contains(notes[0].Msg, want) {
			t.Errorf("%s: %v %v, want a note %q", spec, notes, err, want)
		}
	}
	for spec, want := range map[string]string{
		"mtu=9":                 "mtu=9: the tap's MTU in bytes, 68..65535",
		"mtu=big":               "mtu=big",
		"vlan=10":               "ringfence network create br10 --uplink UPLINK.10",
		"bridge":                "not key=value",
		"colour=red":            `unknown key "colour"`,
		"bridge=a b":            "not a valid interface name",
		"type=netfront":         "use ioemu or vif",
		"mac=01:00:00:00:00:00": "multicast",
	} {
		if _, _, err := ParseVif(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", spec, err, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "50m": 50 << 20, "1G": 1 << 30, "2t": 2 << 40, " 8k ": 8 << 10} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "m", "1.5g", "9999999999t"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}
