package config

// Reading the xl.cfg corpus's INDEX.md: for each file, xl's verdict and
// the facts the real xl parser gives. The corpus lives outside the repo
// (../shared/corpus/xlcfg beside the checkout, as CI has it) and is read,
// never copied.

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// xlFact is one fact of one file: a key like "memory", "disk[1].vdev" or
// "vif[0].script", and the value INDEX.md gives (annotations such as
// "(default)" stripped).
type xlFact struct{ key, want string }

// xlFile is one corpus file's entry.
type xlFile struct {
	num     string
	file    string
	verdict string // ACCEPT, REJECT, LENIENT (xl rejects, a lenient reader accepts), FRAGMENT
	facts   []xlFact
}

// corpusDir finds the corpus: $RINGFENCE_XLCFG_CORPUS (another set scored
// the same way), else shared/corpus/xlcfg in a parent of the working
// directory. Missing, it fails under CI and skips elsewhere.
func corpusDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("RINGFENCE_XLCFG_CORPUS"); d != "" {
		return d
	}
	wd, _ := os.Getwd()
	for d := wd; ; d = filepath.Dir(d) {
		c := filepath.Join(d, "shared", "corpus", "xlcfg")
		if _, err := os.Stat(filepath.Join(c, "INDEX.md")); err == nil {
			return c
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("the xl.cfg corpus (shared/corpus/xlcfg/INDEX.md in a parent of %s) is missing: CI must have ../shared beside the checkout", wd)
	}
	t.Skipf("no shared/corpus/xlcfg in a parent of %s (set RINGFENCE_XLCFG_CORPUS to score a corpus elsewhere)", wd)
	return ""
}

var (
	sectionRE = regexp.MustCompile("^### ([0-9]+)\\. `([^`]+)`")
	verdictRE = regexp.MustCompile(`^- xl verdict: \*\*(.+)\*\*`)
	factRE    = regexp.MustCompile("([a-z_]+) (`[^`]*`|[^;`]+)(?:; |$)")
	actionRE  = regexp.MustCompile(`(on_[a-z]+) ([a-z-]+)`)
	countRE   = regexp.MustCompile(`^- (disks|vifs) \(([0-9]+)\)`)
	deviceRE  = regexp.MustCompile(`^  - \[([0-9]+)\] (.*)$`)
	extraRE   = regexp.MustCompile("([a-z_]+)=`([^`]*)`|([a-z_]+)=([^ ,`]+)|\\b(cdrom)\\b")
)

// readIndex parses INDEX.md's per-file sections.
func readIndex(t *testing.T, dir string) []xlFile {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "INDEX.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []xlFile
	var cur *xlFile
	kind := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := sectionRE.FindStringSubmatch(line); m != nil {
			out = append(out, xlFile{num: m[1], file: m[2]})
			cur, kind = &out[len(out)-1], ""
			continue
		}
		if cur == nil || strings.HasPrefix(line, "## ") {
			cur = nil
			continue
		}
		cur.readLine(line, &kind)
	}
	return out
}

// readLine takes one line of a file's section; kind is the device list
// being read (disks, vifs).
func (x *xlFile) readLine(line string, kind *string) {
	add := func(k, v string) { x.facts = append(x.facts, xlFact{k, v}) }
	switch {
	case verdictRE.MatchString(line):
		v := verdictRE.FindStringSubmatch(line)[1]
		switch {
		case strings.Contains(v, "lenient: accept"):
			x.verdict = "LENIENT"
		case strings.Contains(v, "fragment"):
			x.verdict = "FRAGMENT"
		case strings.HasPrefix(v, "ACCEPT"):
			x.verdict = "ACCEPT"
		default:
			x.verdict = "REJECT"
		}
	case countRE.MatchString(line):
		m := countRE.FindStringSubmatch(line)
		*kind = m[1][:len(m[1])-1]
		add(m[1], m[2])
	case deviceRE.MatchString(line):
		m := deviceRE.FindStringSubmatch(line)
		x.readDevice(*kind+"["+m[1]+"]", m[2])
	case strings.HasPrefix(line, "- on_"):
		for _, m := range actionRE.FindAllStringSubmatch(line, -1) {
			add(m[1], m[2])
		}
	case strings.HasPrefix(line, "- ") && !strings.HasPrefix(line, "- origin") && !strings.HasPrefix(line, "- notes") &&
		!strings.HasPrefix(line, "- facts") && !strings.HasPrefix(line, "- expected"):
		for _, m := range factRE.FindAllStringSubmatch(line[2:], -1) {
			v := strings.TrimSpace(m[2])
			if strings.HasPrefix(v, "`") {
				v = strings.Trim(v, "`")
			} else {
				v = strings.Fields(v)[0] // "pv (default)", "1* (1*)" -> pv, 1*
				v = strings.TrimSuffix(v, "*")
			}
			if v == "–" {
				continue // a fragment's size: not a fact
			}
			add(m[1], v)
		}
	}
}

// readDevice reads "target `T` | vdev `V` | rw | raw | extras" or
// "mac `M` | bridge `B` | k=`v`, k=`v`".
func (x *xlFile) readDevice(prefix, s string) {
	add := func(k, v string) { x.facts = append(x.facts, xlFact{prefix + "." + k, v}) }
	parts := strings.Split(s, " | ")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if k, v, ok := strings.Cut(p, " `"); ok && !strings.Contains(k, "=") {
			add(k, strings.TrimSuffix(strings.TrimSuffix(v, "`"), " (default)"))
			continue
		}
		if strings.HasPrefix(prefix, "disk") && i == 2 {
			add("access", p)
			continue
		}
		if strings.HasPrefix(prefix, "disk") && i == 3 {
			add("format", p)
			continue
		}
		for _, m := range extraRE.FindAllStringSubmatch(p, -1) {
			switch {
			case m[1] != "":
				add(m[1], m[2])
			case m[3] != "":
				add(m[3], m[4])
			default:
				add(m[5], "yes")
			}
		}
	}
}
