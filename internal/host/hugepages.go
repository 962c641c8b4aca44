package host

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// HugePages are the host's free huge pages and where hugetlbfs is mounted.
type HugePages struct {
	FreeKiB int64  // HugePages_Free x Hugepagesize
	Mount   string // a hugetlbfs mount of that page size, "" if none
}

// ReadHugePages looks at /proc/meminfo and /proc/self/mounts. Guest RAM is
// backed by huge pages only when the admin configured them (vm.nr_hugepages
// and a hugetlbfs mount): we never change host settings ourselves.
func ReadHugePages() HugePages {
	var hp HugePages
	var free, size int64
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 2 {
				continue
			}
			n, _ := strconv.ParseInt(fs[1], 10, 64)
			switch fs[0] {
			case "HugePages_Free:":
				free = n
			case "Hugepagesize:":
				size = n
			}
		}
		f.Close()
	}
	hp.FreeKiB = free * size
	if b, err := os.ReadFile("/proc/self/mounts"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) >= 4 && fs[2] == "hugetlbfs" && (!strings.Contains(fs[3], "pagesize=") || strings.Contains(fs[3], "pagesize="+strconv.FormatInt(size/1024, 10)+"M")) {
				hp.Mount = fs[1]
				break
			}
		}
	}
	return hp
}
