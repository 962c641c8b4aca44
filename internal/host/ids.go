package host

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// IDRange is the block of uids (each also used as its gid) that QEMU
// processes run as: one per running domain, so no QEMU can signal,
// ptrace or open the files of another (libvirt's dynamic ownership and
// Firecracker's jailer do the same). Count 0 means QEMU stays root
// (development only).
type IDRange struct{ Base, Count int }

// DefaultIDRange lies far above normal users, systemd's dynamic users
// and the usual /etc/subuid blocks.
var DefaultIDRange = IDRange{Base: 2_000_000_000, Count: 65536}

// Contains reports whether id is in the range.
func (r IDRange) Contains(id int) bool { return id >= r.Base && id < r.Base+r.Count }

// Check refuses a range that overlaps an existing user or group, or a
// subordinate id block (a container's ids), in the given files
// (/etc/passwd, /etc/group, /etc/subuid, /etc/subgid).
func (r IDRange) Check(passwd, group, subuid, subgid string) error {
	if r.Count == 0 {
		return nil
	}
	if r.Base < 1000 || r.Count < 1 || int64(r.Base)+int64(r.Count) > 4_294_967_294 {
		return fmt.Errorf("QEMU id range %d:%d: want BASE >= 1000 and BASE+COUNT below 4294967294", r.Base, r.Count)
	}
	for _, f := range []string{passwd, group} {
		if err := eachLine(f, func(fields []string) error {
			if len(fields) < 3 {
				return nil
			}
			id, err := strconv.Atoi(fields[2])
			if err == nil && r.Contains(id) {
				return fmt.Errorf("QEMU id range %d-%d holds %s's id %d (%s): pick another with serve --qemu-ids BASE:COUNT", r.Base, r.Base+r.Count-1, fields[0], id, f)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	for _, f := range []string{subuid, subgid} {
		if err := eachLine(f, func(fields []string) error {
			if len(fields) < 3 {
				return nil
			}
			start, e1 := strconv.Atoi(fields[1])
			n, e2 := strconv.Atoi(fields[2])
			if e1 == nil && e2 == nil && start < r.Base+r.Count && r.Base < start+n {
				return fmt.Errorf("QEMU id range %d-%d overlaps %s's subordinate ids %d-%d (%s): pick another with serve --qemu-ids BASE:COUNT", r.Base, r.Base+r.Count-1, fields[0], start, start+n-1, f)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// eachLine calls fn with the colon-separated fields of each line of path
// (a missing file has none).
func eachLine(path string, fn func([]string) error) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if err := fn(strings.Split(line, ":")); err != nil {
			return err
		}
	}
	return sc.Err()
}

// ParseIDRange reads BASE[:COUNT] ("root" = no range: QEMU stays root).
func ParseIDRange(s string) (IDRange, error) {
	if s == "root" {
		return IDRange{}, nil
	}
	b, c, hasCount := strings.Cut(s, ":")
	base, err := strconv.Atoi(b)
	count := DefaultIDRange.Count
	if err == nil && hasCount {
		count, err = strconv.Atoi(c)
	}
	if err != nil {
		return IDRange{}, fmt.Errorf("--qemu-ids %q: want BASE[:COUNT], e.g. 2000000000:65536", s)
	}
	return IDRange{Base: base, Count: count}, nil
}
