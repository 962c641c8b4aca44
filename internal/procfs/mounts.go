package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Paths of the /proc files other packages parse through this one; their
// parsers take a path so tests can hand them a fixture.
const (
	SelfMountinfo = "/proc/self/mountinfo"
	SelfCgroup    = "/proc/self/cgroup"
	Swaps         = "/proc/swaps"
	CPUInfo       = "/proc/cpuinfo"
)

// Mount is one line of a mountinfo file (proc(5)).
type Mount struct {
	MajorMinor string // st_dev of the mounted filesystem, "8:1"
	Root       string // the mount's root within its filesystem
	Point      string // where it is mounted (octal escapes undone)
	FSType     string
	Source     string
	SuperOpts  string // per-superblock options, comma-separated
}

// Mountinfo parses a mountinfo file ("" reads this process's).
func Mountinfo(path string) ([]Mount, error) {
	if path == "" {
		path = SelfMountinfo
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the host's mounts: %w", err)
	}
	var out []Mount
	for _, line := range strings.Split(string(b), "\n") {
		// "id parent maj:min root mountpoint opts [optional...] - fstype source superopts"
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 2 {
			continue
		}
		m := Mount{MajorMinor: pf[2], Root: unescape(pf[3]), Point: unescape(pf[4]), FSType: qf[0], Source: unescape(qf[1])}
		if len(qf) > 2 {
			m.SuperOpts = qf[2]
		}
		out = append(out, m)
	}
	return out, nil
}

// unescape undoes the kernel's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
