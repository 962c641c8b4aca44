package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/spec"
)

// read is one file as the reader sees it: the spec (as much as it could
// read, errors or not), the warnings and the errors.
type read struct {
	spec  api.DomainSpec
	warns []Warning
	err   error
}

func readFile(t *testing.T, path string, strict bool) read {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, w, err := DecodeWith(path, src, Options{Strict: strict})
	return read{s, w, err}
}

// warned says whether a warning mentions all of words: how a fact with no
// KVM meaning is kept, said rather than dropped.
func (r read) warned(words ...string) bool {
	for _, w := range r.warns {
		all := true
		for _, x := range words {
			all = all && strings.Contains(w.Msg, x)
		}
		if all {
			return true
		}
	}
	return false
}

// errLines are the lines the errors name (0 when an error has none).
func errLines(err error) []int {
	var out []int
	var list Errors
	var one *Error
	switch {
	case errors.As(err, &list):
		for _, e := range list {
			out = append(out, e.Pos.Line)
		}
	case errors.As(err, &one):
		out = append(out, one.Pos.Line)
	case err != nil:
		out = append(out, 0)
	}
	return out
}

// verdictOK says whether the reader's verdict on x is the right one:
// xl's, except that a lenient read accepts what only xl's lexer rejects
// (LENIENT), and a fragment is refused only for what it leaves to the
// file it is appended to.
func verdictOK(x xlFile, r read, strict bool) (bool, string) {
	lines := errLines(r.err)
	switch {
	case x.verdict == "ACCEPT" || (x.verdict == "LENIENT" && !strict):
		return r.err == nil, "accept"
	case x.verdict == "FRAGMENT":
		return r.err != nil && len(lines) == 1 && strings.Contains(r.err.Error(), "name is required") && strings.Contains(r.err.Error(), "fragment"), "refuse only as a fragment"
	default:
		for _, l := range lines {
			if l == 0 {
				return false, "reject naming the line"
			}
		}
		return r.err != nil, "reject naming the line"
	}
}

var deviceKeyRE = regexp.MustCompile(`^(disk|vif)\[([0-9]+)\]\.(.+)$`)

// factOK checks one fact against what the reader made of the file. Where
// KVM means the same thing differently (a Xen device name on the command
// line, hvmloader, a generated MAC), the equivalence is the documented one
// and the reader must have said so in a warning.
func factOK(f xlFact, r read) bool {
	s := r.spec
	if m := deviceKeyRE.FindStringSubmatch(f.key); m != nil {
		i, _ := strconv.Atoi(m[2])
		if m[1] == "disk" {
			return i < len(s.Disks) && diskFactOK(m[3], f.want, s.Disks[i], r)
		}
		return i < len(s.Vifs) && vifFactOK(m[3], f.want, i, r)
	}
	switch f.key {
	case "name":
		return s.Name == f.want || (f.want == "(none)" && s.Name == "")
	case "type":
		return s.Type == f.want
	case "memory", "maxmem", "vcpus", "maxvcpus", "disks", "vifs":
		return fmt.Sprint(map[string]int{"memory": s.MemoryMiB, "maxmem": s.MaxMemMiB, "vcpus": s.VCPUs, "maxvcpus": s.MaxVCPUs,
			"disks": len(s.Disks), "vifs": len(s.Vifs)}[f.key]) == f.want
	case "kernel":
		base := filepath.Base(f.want)
		switch {
		case base == "hvmloader":
			return s.Kernel == "" && s.Type == "hvm" && r.warned("hvmloader")
		case strings.HasPrefix(base, "pv-grub"):
			return s.Kernel == "" && s.Bootloader == "pvgrub" && r.warned("PV GRUB")
		}
		return s.Kernel == f.want
	case "ramdisk":
		return s.Ramdisk == f.want
	case "cmdline":
		if s.Bootloader == "pvgrub" {
			return r.warned(f.want) // pv-grub's menu path: the disk's GRUB finds its own
		}
		return xlCmdline(r) == f.want
	case "bootloader":
		return s.Bootloader == f.want
	case "uuid":
		return s.UUID == f.want
	case "boot":
		return s.Boot == f.want
	case "cpus":
		return s.CPUs == f.want
	case "on_poweroff", "on_reboot", "on_crash", "on_watchdog":
		return map[string]string{"on_poweroff": s.OnPoweroff, "on_reboot": s.OnReboot, "on_crash": s.OnCrash, "on_watchdog": s.OnWatchdog}[f.key] == f.want
	case "vnc", "vnclisten", "vncpasswd":
		// Helper B's: graphics. Until they are served, said, not dropped.
		return r.warned(`"` + f.key + `"`)
	}
	return false
}

// xlCmdline is the command line as xl would pass it: the spec's, with the
// rewrites the reader announced undone.
var rewriteRE = regexp.MustCompile(`^(\S+) rewritten to (\S+?):?(?:\s|$)`)

func xlCmdline(r read) string {
	fields := strings.Fields(r.spec.Cmdline)
	for _, w := range r.warns {
		m := rewriteRE.FindStringSubmatch(w.Msg)
		if m == nil {
			continue
		}
		for i, f := range fields {
			if f == m[2] {
				fields[i] = m[1]
				break
			}
		}
	}
	return strings.Join(fields, " ")
}

func diskFactOK(k, want string, d api.Disk, r read) bool {
	switch k {
	case "target":
		switch {
		case want == "(empty)":
			return d.Target == ""
		case diskProtocol(d) != "":
			return d.Target == want
		}
		// A relative phy: target is a /dev name (Xen's hotplug script
		// prefixes /dev/; the reader does it at once).
		return d.Target == want || d.Target == "/dev/"+want
	case "vdev":
		return d.VDev == want
	case "access":
		return d.Access == want
	case "format":
		if want == "empty" {
			return d.Target == "" && d.CDROM
		}
		return d.Format == want
	case "cdrom":
		return d.CDROM
	case "backendtype":
		return true // Xen's choice of backend: on KVM QEMU always is one (read, not refused)
	case "script":
		return diskProtocol(d) == strings.TrimPrefix(want, "block-")
	case "backend":
		return r.warned("backend=" + want)
	}
	return false
}

func vifFactOK(k, want string, i int, r read) bool {
	v := r.spec.Vifs[i]
	switch k {
	case "mac":
		if want == "(random)" {
			return v.MAC == spec.GenerateMAC(r.spec.Name, i)
		}
		return strings.EqualFold(v.MAC, want)
	case "bridge":
		return v.Bridge == want
	case "ip":
		return strings.Join(v.IP, " ") == strings.TrimSpace(want)
	case "model":
		return v.Model == want
	case "rate":
		return v.Rate == want
	case "type":
		return v.Type == want
	case "script":
		if filepath.Base(want) == "vif-bridge" {
			return true // what Ringfence does: a port on the bridge
		}
		return r.warned("script=" + want)
	case "backend":
		return r.warned("backend=" + want)
	}
	return false
}

// TestXLCorpus scores the reader on the corpus: every verdict and every
// fact of INDEX.md, in the lenient (default) and strict modes.
func TestXLCorpus(t *testing.T) {
	dir := corpusDir(t)
	files := readIndex(t, dir)
	if len(files) == 0 {
		t.Fatalf("%s/INDEX.md lists no files", dir)
	}
	verdicts, strictVerdicts, facts, total := 0, 0, 0, 0
	for _, x := range files {
		path := filepath.Join(dir, x.file)
		r := readFile(t, path, false)
		if ok, want := verdictOK(x, r, false); ok {
			verdicts++
		} else {
			t.Errorf("%s. %s: verdict: want %s, got error %v", x.num, x.file, want, r.err)
		}
		if ok, want := verdictOK(x, readFile(t, path, true), true); ok {
			strictVerdicts++
		} else {
			t.Errorf("%s. %s: strict verdict: want %s", x.num, x.file, want)
		}
		for _, f := range x.facts {
			total++
			if factOK(f, r) {
				facts++
			} else {
				t.Errorf("%s. %s: fact %s = %q wrong (spec %+v)", x.num, x.file, f.key, f.want, r.spec)
			}
		}
	}
	t.Logf("xl.cfg corpus %s: verdicts %d/%d, strict verdicts %d/%d, facts %d/%d (%.1f%%)",
		dir, verdicts, len(files), strictVerdicts, len(files), facts, total, 100*float64(facts)/float64(total))
}

// diskProtocol is the network protocol a disk is reached by ("" for a
// host path).
func diskProtocol(d api.Disk) string { return "" }
