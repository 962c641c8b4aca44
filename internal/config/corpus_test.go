package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/spec"
)

type diskFact struct{ target, vdev, guest, access, format string }
type vifFact struct{ mac, bridge, ip, rate string }

// corpus lists, for every file in testdata/corpus, the facts it must yield
// (or the error it must give). Facts are written by hand from the file, not
// from the parser's output.
var corpus = map[string]struct {
	name       string
	typ        string
	mem, vcpus int
	cmdline    string
	disks      []diskFact
	vifs       []vifFact
	actions    string // on_poweroff/on_reboot/on_crash
	warnings   []string
	err        string
	extra      func(t *testing.T, f string)
}{
	"01-xl-pvlinux.cfg": {name: "DomU", typ: "pv", mem: 128, vcpus: 2, cmdline: "root=/dev/vda1",
		disks: []diskFact{{"/dev/vg/guest-volume", "xvda", "vda", "rw", "raw"}}, vifs: []vifFact{{spec.GenerateMAC("DomU", 0), "xenbr0", "", ""}},
		actions: "destroy/restart/destroy", warnings: []string{"root=/dev/xvda1 rewritten to root=/dev/vda1"}},
	"02-xl-hvm.cfg": {name: "winbox", typ: "hvm", mem: 2048, vcpus: 2,
		disks:   []diskFact{{"/dev/vg/guest-volume", "xvda", "vda", "rw", "raw"}, {"/srv/iso/install.iso", "xvdc", "vdb", "ro", "raw"}},
		vifs:    []vifFact{{"00:16:3e:0a:0b:0c", "xenbr0", "", ""}},
		actions: "destroy/restart/preserve", warnings: []string{`"vnclisten" is ignored: ringfence opens no VNC port`, `"usbdevice" is ignored`}},
	"03-xl-pvh.cfg": {name: "pvh01", typ: "pvh", mem: 512, vcpus: 4, cmdline: "console=ttyS0 earlyprintk=xen root=/dev/vda1 rw",
		disks: []diskFact{{"/dev/vg/pvh01", "xvda", "vda", "rw", "raw"}}, vifs: []vifFact{{spec.GenerateMAC("pvh01", 0), "br0", "", ""}},
		actions: "destroy/restart/destroy"},
	"04-seed-web01.cfg": {err: `04-seed-web01.cfg:9:9: vif: mac "00:16:3E:XX:XX:XX" is malformed`},
	"05-xm-example1.cfg": {name: "ExampleDomain", typ: "pv", mem: 64, vcpus: 1, cmdline: "root=/dev/vda ro 4",
		disks: []diskFact{{"/dev/hda1", "hda1", "vda", "rw", "raw"}}, vifs: []vifFact{{spec.GenerateMAC("ExampleDomain", 0), "xenbr0", "", ""}},
		actions: "destroy/restart/destroy"},
	"06-xm-example2-python.cfg": {err: "06-xm-example2-python.cfg:2:8: expected `=` after \"import\", found 'o'; xl.cfg lines are `key = value` (keys are a-z, 0-9, '_' and '.') (this looks like Python \"import\""},
	"07-xm-hvm.cfg": {name: "ExampleHVMDomain", typ: "hvm", mem: 128, vcpus: 1,
		disks:   []diskFact{{"/var/images/min-el3-i386.img", "hda", "vda", "rw", "raw"}, {"", "hdc", "vdb", "ro", "raw"}},
		vifs:    []vifFact{{spec.GenerateMAC("ExampleHVMDomain", 0), "xenbr0", "", ""}},
		actions: "destroy/restart/destroy", warnings: []string{"hvmloader is Xen's HVM firmware", `"device_model" is ignored`}},
	"08-ubuntu-netboot.cfg": {name: "ubuntu", typ: "pv", mem: 1024, vcpus: 2,
		disks: []diskFact{{"/dev/vg/ubuntu", "xvda", "vda", "rw", "raw"}}, vifs: []vifFact{{spec.GenerateMAC("ubuntu", 0), "ovsbr0", "", ""}},
		actions: "destroy/restart/destroy"},
	"09-appliance-tapaio.cfg": {name: "appliance", typ: "pv", mem: 512, vcpus: 1, cmdline: "xencons=xvc console=ttyS0",
		disks: []diskFact{{"/root/xen/appliance.raw", "xvda", "vda", "rw", "raw"}}, vifs: []vifFact{{spec.GenerateMAC("appliance", 0), "br0", "", ""}},
		actions: "destroy/restart/destroy"},
	"10-pygrub.cfg": {name: "mail.example.org", typ: "pv", mem: 1024, vcpus: 2, cmdline: "root=/dev/vda ro",
		disks:   []diskFact{{"/dev/vg0/mail-disk", "xvda2", "vda", "rw", "raw"}, {"/dev/vg0/mail-swap", "xvda1", "vdb", "rw", "raw"}},
		vifs:    []vifFact{{"00:16:3e:5c:1a:2b", "xenbr0", "", ""}},
		actions: "destroy/restart/restart", warnings: []string{`"dhcp" is ignored`}},
	"11-xen-tools.cfg": {name: "db1", typ: "pv", mem: 4096, vcpus: 4, cmdline: "root=/dev/vda ro elevator=noop",
		disks:   []diskFact{{"/home/xen/domains/db1/disk.img", "xvda2", "vda", "rw", "raw"}, {"/home/xen/domains/db1/swap.img", "xvda1", "vdb", "rw", "raw"}},
		vifs:    []vifFact{{"00:16:3e:d5:10:21", "xenbr0", "10.0.0.21", ""}},
		actions: "destroy/restart/restart"},
	"12-arm-pinned.cfg": {name: "v2xdomu", typ: "pv", mem: 2048, vcpus: 2, cmdline: "console=ttyS0 root=/dev/vda debug rw",
		disks:   []diskFact{{"/dev/mmcblk0p3", "xvda", "vda", "rw", "raw"}},
		vifs:    []vifFact{{spec.GenerateMAC("v2xdomu", 0), "xenbr0", "", ""}, {spec.GenerateMAC("v2xdomu", 1), "v2xbr", "", ""}},
		actions: "destroy/restart/destroy"},
	"13-sandbox-template.cfg": {err: `13-sandbox-template.cfg:2:8: name: "{{ VM_NAME }}" is not a valid domain name`},
	"14-rate-limited.cfg": {name: "shop", typ: "pv", mem: 768, vcpus: 1, cmdline: "root=/dev/vda console=ttyS0",
		disks:   []diskFact{{"/dev/vg/shop-root", "xvda", "vda", "rw", "raw"}, {"/dev/vg/shop-data", "xvdb", "vdb", "rw", "raw"}},
		vifs:    []vifFact{{"00:16:3e:11:22:33", "xenbr0", "203.0.113.10 203.0.113.11", "10Mb/s"}, {"00:16:3e:11:22:34", "xenbr1", "", "1MB/s@20ms"}},
		actions: "destroy/restart/destroy"},
	"15-qcow2.cfg": {name: "qguest", typ: "pv", mem: 256, vcpus: 1,
		disks:   []diskFact{{"/srv/xen/qguest.qcow2", "xvda", "vda", "rw", "qcow2"}, {"/srv/xen/data.qcow2", "xvdb", "vdb", "ro", "qcow2"}},
		actions: "destroy/rename-restart/destroy"},
	"16-semicolons.cfg": {name: "tiny", typ: "pv", mem: 96, vcpus: 1,
		disks: []diskFact{{"/srv/tiny.img", "xvda", "vda", "rw", "raw"}}, vifs: []vifFact{{spec.GenerateMAC("tiny", 0), "xenbr0", "", ""}},
		actions: "destroy/restart/destroy"},
	"17-pv-grub.cfg": {name: "PVGrubDomain", typ: "pv", mem: 128, vcpus: 1,
		disks: []diskFact{{"/dev/hda1", "hda1", "vda", "rw", "raw"}}, vifs: []vifFact{{spec.GenerateMAC("PVGrubDomain", 0), "xenbr0", "", ""}},
		actions: "destroy/restart/destroy", warnings: []string{"PV GRUB, which cannot run under KVM"}},
	"18-ioemu-hvm.cfg": {name: "legacyhvm", typ: "hvm", mem: 512, vcpus: 1,
		disks:   []diskFact{{"/dev/vg/legacy", "hda", "vda", "rw", "raw"}, {"/srv/iso/debian.iso", "hdc", "vdb", "ro", "raw"}},
		vifs:    []vifFact{{"00:16:3e:00:aa:01", "xenbr0", "", ""}},
		actions: "destroy/restart/destroy"},
	"19-xvdb-cdrom.cfg": {name: "rescue", typ: "pv", mem: 256, vcpus: 1,
		disks:   []diskFact{{"/dev/vg/rescue", "xvda", "vda", "rw", "raw"}, {"/srv/iso/rescue.iso", "xvdb", "vdb", "ro", "raw"}},
		actions: "destroy/restart/destroy"},
	"20-placeholder-cpus.cfg": {name: "tmpl", typ: "pv", mem: 256, vcpus: 1, actions: "destroy/restart/destroy",
		warnings: []string{`4:8: warning: cpus "DOMF_ALLOWED_PCPUS" is not a CPU list (a placeholder left in a template?)`}},
	"21-cpu-cap-xm.cfg": {name: "oldcap", typ: "pv", mem: 512, vcpus: 2, actions: "destroy/restart/destroy",
		warnings: []string{`"cpu_cap" is ignored: this is xm's spelling`}},
	"22-append.cfg": {name: "layered", typ: "pv", mem: 256, vcpus: 1, cmdline: "root=/dev/vda quiet",
		disks:   []diskFact{{"/dev/vg/layered", "xvda", "vda", "rw", "raw"}, {"/dev/vg/layered-data", "xvdb", "vdb", "rw", "raw"}},
		actions: "destroy/restart/destroy"},
	"23-no-prefix-mistake.cfg": {err: "23-no-prefix-mistake.cfg:4:10: disk: \"/dev/vg/oops,xvda1,w\": without a prefix the fields are TARGET,FORMAT,VDEV,ACCESS"},
	"24-octal.cfg": {name: "octal", typ: "pv", mem: 256, vcpus: 2, actions: "destroy/restart/destroy",
		warnings: []string{"memory = 0400: a leading 0 makes it octal in xl (256)", "vcpus = 02"}},
	"25-multi-nic-uuid.cfg": {name: "router", typ: "pv", mem: 256, vcpus: 1,
		disks:   []diskFact{{"/srv/xen/router.img", "xvda", "vda", "rw", "raw"}},
		vifs:    []vifFact{{"00:16:3e:01:00:01", "wan0", "", ""}, {"00:16:3e:01:00:02", "lan0", "", ""}},
		actions: "destroy/restart/destroy"},
	"26-nbd.cfg": {err: "26-nbd.cfg:4:10: disk: nbd: targets are reached by Xen's block-nbd hotplug script"},
}

func TestCorpus(t *testing.T) {
	files, _ := filepath.Glob("testdata/corpus/*.cfg")
	if len(files) < 25 || len(files) != len(corpus) {
		t.Fatalf("%d corpus files, %d with facts", len(files), len(corpus))
	}
	for _, path := range files {
		base := filepath.Base(path)
		want, ok := corpus[base]
		if !ok {
			t.Errorf("%s has no facts", base)
			continue
		}
		t.Run(base, func(t *testing.T) {
			s, warns, err := Load(path)
			if want.err != "" {
				if err == nil || !strings.Contains(err.Error(), want.err) {
					t.Fatalf("error %v, want %q", err, want.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Name != want.name || s.Type != want.typ || s.MemoryMiB != want.mem || s.VCPUs != want.vcpus {
				t.Fatalf("name/type/mem/vcpus %s/%s/%d/%d", s.Name, s.Type, s.MemoryMiB, s.VCPUs)
			}
			if want.cmdline != "" && s.Cmdline != want.cmdline {
				t.Fatalf("cmdline %q, want %q", s.Cmdline, want.cmdline)
			}
			if got := s.OnPoweroff + "/" + s.OnReboot + "/" + s.OnCrash; got != want.actions {
				t.Fatalf("actions %s, want %s", got, want.actions)
			}
			if len(s.Disks) != len(want.disks) {
				t.Fatalf("%d disks, want %d: %+v", len(s.Disks), len(want.disks), s.Disks)
			}
			for i, d := range want.disks {
				g := s.Disks[i]
				if g.Target != d.target || g.VDev != d.vdev || g.Guest != d.guest || g.Access != d.access || g.Format != d.format {
					t.Fatalf("disk %d: %+v, want %+v", i, g, d)
				}
			}
			if len(s.Vifs) != len(want.vifs) {
				t.Fatalf("%d vifs, want %d", len(s.Vifs), len(want.vifs))
			}
			for i, v := range want.vifs {
				g := s.Vifs[i]
				if g.MAC != v.mac || g.Bridge != v.bridge || strings.Join(g.IP, " ") != v.ip || g.Rate != v.rate {
					t.Fatalf("vif %d: %+v, want %+v", i, g, v)
				}
			}
			var all []string
			for _, w := range warns {
				all = append(all, w.String())
			}
			for _, w := range want.warnings {
				if !strings.Contains(strings.Join(all, "\n"), w) {
					t.Errorf("no warning %q in:\n%s", w, strings.Join(all, "\n"))
				}
			}
			for _, w := range all {
				if !strings.HasPrefix(w, path+":") {
					t.Errorf("warning without file:line: %s", w)
				}
			}
		})
	}
}
