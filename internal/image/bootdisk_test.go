package image

import (
	"encoding/binary"
	"testing"
)

// The MBR keeps boot.img's code, points it at core.img (LBA 1), and has
// one bootable Linux partition from sector 2048 to the disk's end.
func TestBootSector(t *testing.T) {
	boot := make([]byte, sector)
	for i := range boot {
		boot[i] = 0xcc
	}
	for _, size := range []int64{1 << 30, 4 << 30, 100 << 30} {
		parts := size/sector - partStart
		m := bootSector(boot, parts)
		p := m[mbrPartTable:]
		for _, c := range []struct {
			what      string
			got, want uint64
		}{
			{"code kept", uint64(m[0x10]), 0xcc},
			{"core.img sector", binary.LittleEndian.Uint64(m[bootKernelSector:]), 1},
			{"drive check NOPs", uint64(binary.LittleEndian.Uint16(m[bootDriveCheck:])), 0x9090},
			{"bootable", uint64(p[0]), 0x80},
			{"type Linux", uint64(p[4]), 0x83},
			{"start", uint64(binary.LittleEndian.Uint32(p[8:])), partStart},
			{"sectors", uint64(binary.LittleEndian.Uint32(p[12:])), uint64(parts)},
			{"no second partition", uint64(p[16+4]), 0},
			{"signature", uint64(binary.LittleEndian.Uint16(m[0x1fe:])), 0xaa55},
		} {
			if c.got != c.want {
				t.Errorf("%d GiB: %s = %#x, want %#x", size>>30, c.what, c.got, c.want)
			}
		}
	}
}

func TestCloudBuildCheck(t *testing.T) {
	for _, c := range []struct {
		b  CloudBuild
		ok bool
	}{
		{CloudBuild{Name: "debian-12"}, true},
		{CloudBuild{Name: "debian-12", Packages: []string{"nginx", "libc6-dev", "g++"}, SizeB: 8 << 30}, true},
		{CloudBuild{Name: "ubuntu"}, false},
		{CloudBuild{Name: "debian-12", Packages: []string{"Nginx"}}, false},
		{CloudBuild{Name: "debian-12", Packages: []string{"a;rm"}}, false},
		{CloudBuild{Name: "debian-12", SizeB: 512 << 20}, false},
		{CloudBuild{Name: "debian-12", SizeB: 4<<30 + 1}, false},
	} {
		if err := c.b.Check(); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.b, err)
		}
	}
	a, b := CloudBuild{Name: "debian-12"}, CloudBuild{Name: "debian-12", Packages: []string{"nginx"}}
	if a.Recipe() == b.Recipe() || a.Recipe() != (CloudBuild{Name: "debian-12", SizeB: DefaultCloudSize}).Recipe() {
		t.Errorf("recipes: %s %s", a.Recipe(), b.Recipe())
	}
}
