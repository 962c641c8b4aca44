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
	case "vnc":
		return s.VNC == (f.want == "1")
	case "vncpasswd":
		return s.VNCPassword == f.want
	case "vnclisten":
		// No host port is opened: said, not dropped (one merged line).
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
		if want == "(empty)" {
			return d.Target == ""
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
		return false // a network disk (block-nbd...): refused here
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

// refusals are the corpus files Ringfence refuses where xl accepts, on
// purpose: the error they must give, and the facts that go with what is
// refused. Everything else in them must still be right.
var refusals = map[string]struct {
	err   string
	facts []string
}{
	// Network disks: reached by Xen's hotplug scripts; refused with the
	// scheme, why, and how to attach the disk on the host instead.
	"xen__xmexample.nbd.cfg": {"disk: nbd: targets are reached by Xen's block-nbd hotplug script (or its QEMU), which KVM here does not run: attach it on the host (nbd-client HOST PORT /dev/nbd0)",
		[]string{"disks", "disk[0].target", "disk[0].vdev", "disk[0].access", "disk[0].format", "disk[0].script"}},
	"libvirt__xl_test-rbd-multihost-noauth.cfg": {"disk: rbd: targets are reached by Xen's block-rbd hotplug script (or its QEMU), which KVM here does not run: map the image on the host (rbd map POOL/IMAGE)",
		[]string{"disks", "disk[1].target", "disk[1].vdev", "disk[1].access", "disk[1].format", "disk[1].backendtype"}},
	// A name is typed in shells and becomes file names and URL segments:
	// one safe alphabet (internal/names), said with the character and why.
	"libvirt__xm_test-escape-paths.cfg": {`name: "XenGuest2&test" is not a valid domain name: '&' is not allowed: names are typed in shells`, []string{"name"}},
}

// TestXLCorpus scores the reader on the corpus: every verdict and every
// fact of INDEX.md, in the lenient (default) and strict modes. The score
// (logged with -v) counts Ringfence's deliberate refusals as misses.
func TestXLCorpus(t *testing.T) {
	dir := corpusDir(t)
	files := readIndex(t, dir)
	if len(files) == 0 {
		t.Fatalf("%s/INDEX.md lists no files", dir)
	}
	var sc score
	for _, x := range files {
		sc.file(t, x, filepath.Join(dir, x.file))
	}
	t.Logf("xl.cfg corpus %s: verdicts %d/%d, strict verdicts %d/%d, facts %d/%d (%.1f%%); refused on purpose: %d files, %d facts",
		dir, sc.verdicts, len(files), sc.strict, len(files), sc.facts, sc.total, 100*float64(sc.facts)/float64(sc.total), sc.refusedFiles, sc.refusedFacts)
}

// score counts what the reader got right.
type score struct{ verdicts, strict, facts, total, refusedFiles, refusedFacts int }

// file scores one corpus file: its verdict in both modes and its facts.
func (sc *score) file(t *testing.T, x xlFile, path string) {
	t.Helper()
	r := readFile(t, path, false)
	ref, refused := refusals[x.file]
	wrong := map[string]bool{}
	for _, k := range ref.facts {
		wrong[k] = true
	}
	for _, strict := range []bool{false, true} {
		rs := r
		if strict {
			rs = readFile(t, path, true)
		}
		ok, want := verdictOK(x, rs, strict)
		switch {
		case ok && !strict:
			sc.verdicts++
		case ok:
			sc.strict++
		case refused:
			if rs.err == nil || !strings.Contains(rs.err.Error(), ref.err) {
				t.Errorf("%s. %s (strict %v): refused on purpose with %q, got %v", x.num, x.file, strict, ref.err, rs.err)
			}
			if !strict {
				sc.refusedFiles++
			}
		default:
			t.Errorf("%s. %s (strict %v): verdict: want %s, got error %v", x.num, x.file, strict, want, rs.err)
		}
	}
	for _, f := range x.facts {
		sc.total++
		switch ok := factOK(f, r); {
		case ok && wrong[f.key]:
			t.Errorf("%s. %s: fact %s = %q is right, but the file is refused (update refusals)", x.num, x.file, f.key, f.want)
		case ok:
			sc.facts++
		case wrong[f.key]:
			sc.refusedFacts++
		default:
			t.Errorf("%s. %s: fact %s = %q wrong (spec %+v)", x.num, x.file, f.key, f.want, r.spec)
		}
	}
}
