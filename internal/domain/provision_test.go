package domain

import (
	"path/filepath"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

// provisionSpec puts the clone first and the seed read-only second,
// once; boots the image's kernel unless a kernel or bootloader is set;
// records the files and turns the agent's port on.
func TestProvisionSpec(t *testing.T) {
	pl := provisioned{image: api.Image{Kernel: "/p/.images/d.vmlinuz", Initrd: "/p/.images/d.initrd", Cmdline: "root=/dev/vda1 ro"},
		disk: "/p/web-disk.qcow2", seed: "/p/web-seed.iso"}
	extra := api.Disk{Target: "/data.img", VDev: "xvdc", Format: "raw", Access: "rw"}
	for _, c := range []struct {
		name       string
		spec       api.DomainSpec
		disks      []string
		kernel     string
		cmdline    string
		bootloader string
	}{
		{"new", api.DomainSpec{Cmdline: "quiet"}, []string{"/p/web-disk.qcow2", "/p/web-seed.iso"}, pl.image.Kernel, "root=/dev/vda1 ro quiet", ""},
		{"with a disk of its own", api.DomainSpec{Disks: []api.Disk{extra}}, []string{"/p/web-disk.qcow2", "/p/web-seed.iso", "/data.img"}, pl.image.Kernel, "root=/dev/vda1 ro", ""},
		{"again (a restart)", api.DomainSpec{Disks: []api.Disk{{Target: pl.disk}, {Target: pl.seed, Access: "ro"}}, Kernel: pl.image.Kernel},
			[]string{"/p/web-disk.qcow2", "/p/web-seed.iso"}, pl.image.Kernel, "", ""},
		{"firmware", api.DomainSpec{Bootloader: "pygrub"}, []string{"/p/web-disk.qcow2", "/p/web-seed.iso"}, "", "", "pygrub"},
	} {
		s := c.spec
		orig := &api.Provision{Image: "d"}
		s.Provision = orig
		provisionSpec(&s, pl)
		var got []string
		for _, d := range s.Disks {
			got = append(got, d.Target)
		}
		if len(got) != len(c.disks) || got[0] != c.disks[0] || got[len(got)-1] != c.disks[len(c.disks)-1] {
			t.Errorf("%s: disks %v, want %v", c.name, got, c.disks)
		}
		if len(s.Disks) > 1 && s.Disks[1].Target == pl.seed && s.Disks[1].Access != "ro" {
			t.Errorf("%s: the seed is not read-only", c.name)
		}
		if s.Kernel != c.kernel || s.Cmdline != c.cmdline || s.Bootloader != c.bootloader {
			t.Errorf("%s: kernel %q cmdline %q bootloader %q", c.name, s.Kernel, s.Cmdline, s.Bootloader)
		}
		if !s.GuestAgent || s.Provision.Disk != pl.disk || s.Provision.Seed != pl.seed {
			t.Errorf("%s: agent %v, recorded %q %q", c.name, s.GuestAgent, s.Provision.Disk, s.Provision.Seed)
		}
		if orig.Disk != "" {
			t.Errorf("%s: the caller's Provision was changed", c.name)
		}
	}
	dir := t.TempDir()
	un := provisioned{disk: filepath.Join(dir, "d.qcow2"), seed: filepath.Join(dir, "s.iso")}.unmade()
	if !un["vda"] || !un["vdb"] {
		t.Errorf("unmade: %v", un)
	}
}
