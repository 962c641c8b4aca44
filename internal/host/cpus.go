package host

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseCPUList reads xl's cpus= (as recorded in the spec: one CPULIST, or
// per-vCPU lists joined by ";") into one host-CPU set per vCPU. "" and
// "all" mean no pinning (nil). Every CPU must exist on this host.
func ParseCPUList(spec string, vcpus, hostCPUs int) ([][]int, error) {
	if spec == "" || spec == "all" {
		return nil, nil
	}
	lists := strings.Split(spec, ";")
	out := make([][]int, vcpus)
	for v := 0; v < vcpus; v++ {
		src := lists[0]
		if len(lists) > 1 {
			if v >= len(lists) {
				out[v] = nil // xl: vCPUs beyond the list are not pinned
				continue
			}
			src = lists[v]
		}
		set, err := parseOne(src, hostCPUs)
		if err != nil {
			return nil, err
		}
		out[v] = set
	}
	return out, nil
}

func parseOne(s string, hostCPUs int) ([]int, error) {
	if s == "all" {
		return nil, nil
	}
	in := map[int]bool{}
	for _, item := range strings.Split(strings.ReplaceAll(s, " ", ""), ",") {
		neg := strings.HasPrefix(item, "^")
		item = strings.TrimPrefix(item, "^")
		if strings.HasPrefix(item, "node") {
			return nil, fmt.Errorf("%q: NUMA node lists are not supported yet; name CPUs", s)
		}
		lo, hi, isRange := strings.Cut(item, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CPU list", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("%q: bad range %s", s, item)
			}
		}
		for c := a; c <= b; c++ {
			if c >= hostCPUs {
				return nil, fmt.Errorf("CPU %d is outside this host (CPUs 0-%d)", c, hostCPUs-1)
			}
			if neg {
				delete(in, c)
			} else {
				in[c] = true
			}
		}
	}
	var set []int
	for c := 0; c < hostCPUs; c++ {
		if in[c] {
			set = append(set, c)
		}
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("%q leaves no CPU", s)
	}
	return set, nil
}
