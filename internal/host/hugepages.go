package host

import (
	"strconv"
	"strings"

	"github.com/ringfence/ringfence/internal/procfs"
)

// HugePages are the host's free huge pages and where hugetlbfs is mounted.
type HugePages struct {
	FreeKiB int64  // HugePages_Free x Hugepagesize
	Mount   string // a hugetlbfs mount of that page size, "" if none
}

// ReadHugePages looks at /proc/meminfo and the mounts. Guest RAM is
// backed by huge pages only when the admin configured them (vm.nr_hugepages
// and a hugetlbfs mount): we never change host settings ourselves.
func ReadHugePages() HugePages {
	var hp HugePages
	var free, size int64
	if mi, err := procfs.MemInfo(); err == nil {
		free, size = mi["HugePages_Free"], mi["Hugepagesize"]
	}
	hp.FreeKiB = free * size
	ms, _ := procfs.Mountinfo("")
	for _, m := range ms {
		if m.FSType == "hugetlbfs" && (!strings.Contains(m.SuperOpts, "pagesize=") || strings.Contains(m.SuperOpts, "pagesize="+strconv.FormatInt(size/1024, 10)+"M")) {
			hp.Mount = m.Point
			break
		}
	}
	return hp
}
