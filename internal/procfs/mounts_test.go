package procfs

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMountinfo(t *testing.T) {
	f := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(f, []byte(`22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
35 22 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
36 22 0:31 /sub /mnt/with\040space rw master:2 - tmpfs none rw
37 22 0:32 / /dev/hugepages rw - hugetlbfs hugetlbfs rw,pagesize=2M
garbage line
`), 0o644)
	ms, err := Mountinfo(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{"8:1", "/", "/", "ext4", "/dev/sda1", "rw,errors=remount-ro"},
		{"0:30", "/", "/sys/fs/cgroup/memory", "cgroup", "cgroup", "rw,memory"},
		{"0:31", "/sub", "/mnt/with space", "tmpfs", "none", "rw"},
		{"0:32", "/", "/dev/hugepages", "hugetlbfs", "hugetlbfs", "rw,pagesize=2M"},
	}
	if len(ms) != len(want) {
		t.Fatalf("%d mounts, want %d: %+v", len(ms), len(want), ms)
	}
	for i := range want {
		if ms[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", i, ms[i], want[i])
		}
	}
	if _, err := Mountinfo(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("a missing file read without error")
	}
}
