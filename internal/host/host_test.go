package host

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

func TestProbeAccel(t *testing.T) {
	dir := t.TempDir()
	kvm := filepath.Join(dir, "kvm")
	os.WriteFile(kvm, nil, 0o600)
	write := func(flags string) string {
		p := filepath.Join(dir, "cpuinfo-"+flags)
		os.WriteFile(p, []byte("processor\t: 0\nflags\t\t: fpu "+flags+" sse2\n\nprocessor\t: 1\n"), 0o600)
		return p
	}
	cases := []struct {
		name, cpuinfo, dev, want, reason string
	}{
		{"vmx and kvm", write("vmx"), kvm, "kvm", "hardware"},
		{"svm and kvm", write("svm"), kvm, "kvm", "hardware"},
		{"no flag (nested PVM)", write("hypervisor"), kvm, "tcg", "no vmx/svm"},
		{"no /dev/kvm", write("vmx"), filepath.Join(dir, "missing"), "tcg", "cannot be opened"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := ProbeAccel(tc.cpuinfo, tc.dev)
			if a.Name != tc.want || !strings.Contains(a.Reason, tc.reason) {
				t.Fatalf("got %+v", a)
			}
		})
	}
}

func TestLedger(t *testing.T) {
	l := NewLedger(4096, 1024, 2, 1)
	if err := l.Reserve(api.LedgerEntry{Domain: "a", MemoryMiB: 1024, OverheadMiB: 112, VCPUs: 1}); err != nil {
		t.Fatal(err)
	}
	if err := l.Reserve(api.LedgerEntry{Domain: "b", MemoryMiB: 1024, OverheadMiB: 112, VCPUs: 1}); err != nil {
		t.Fatal(err)
	}
	err := l.Reserve(api.LedgerEntry{Domain: "c", MemoryMiB: 1024, OverheadMiB: 112, VCPUs: 0})
	if !errors.Is(err, api.ErrInsufficient) || !strings.Contains(err.Error(), "memory: c asks 1136 MiB") ||
		!strings.Contains(err.Error(), "800 MiB free of 4096") || !strings.Contains(err.Error(), "held by a 1136 MiB, b 1136 MiB") {
		t.Fatalf("oversell not refused clearly: %v", err)
	}
	err = l.Reserve(api.LedgerEntry{Domain: "c", MemoryMiB: 128, OverheadMiB: 112, VCPUs: 1})
	if !errors.Is(err, api.ErrInsufficient) || !strings.Contains(err.Error(), "vcpus: c asks 1 vCPUs, 0 free of 2") {
		t.Fatalf("vCPU oversell not refused: %v", err)
	}
	if s := l.Snapshot(); s.FreeMiB != 800 || len(s.Entries) != 2 || s.VCPUsFree != 0 {
		t.Fatalf("snapshot %+v", s)
	}
	// A refused re-reservation keeps the old one.
	if err := l.Reserve(api.LedgerEntry{Domain: "a", MemoryMiB: 4000, OverheadMiB: 112, VCPUs: 1}); err == nil || len(l.Snapshot().Entries) != 2 {
		t.Fatalf("re-reserve: %v %+v", err, l.Snapshot())
	}
	l.Release("a")
	l.Release("a")
	if err := l.Reserve(api.LedgerEntry{Domain: "c", MemoryMiB: 1024, OverheadMiB: 112, VCPUs: 1}); err != nil {
		t.Fatalf("after release: %v", err)
	}
	if err := NewLedger(4096, 0, 2, 2).Reserve(api.LedgerEntry{Domain: "x", MemoryMiB: 64, OverheadMiB: 0, VCPUs: 4}); err != nil {
		t.Fatalf("ratio 2 should allow 4 vCPUs on 2 CPUs: %v", err)
	}
}

func TestParseCPUList(t *testing.T) {
	cases := []struct {
		spec  string
		vcpus int
		want  string
		err   string
	}{
		{"", 2, "[]", ""},
		{"all", 2, "[]", ""},
		{"0-3,^1", 1, "[[0 2 3]]", ""},
		{"1", 2, "[[1] [1]]", ""},
		{"0;2-3", 3, "[[0] [2 3] []]", ""},
		{"4", 1, "", "CPU 4 is outside this host (CPUs 0-3)"},
		{"0-1,^0-1", 1, "", "leaves no CPU"},
		{"x", 1, "", "not a CPU list"},
	}
	for _, tc := range cases {
		got, err := ParseCPUList(tc.spec, tc.vcpus, 4)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != tc.want && !(tc.want == "[]" && got == nil) {
			t.Errorf("%q: %v %v, want %s", tc.spec, got, err, tc.want)
		}
	}
}

// The v1 and v2 paths write exactly these files (v2 cannot be exercised on
// this host, so its writes are checked here against a fake hierarchy).
func TestCgroupWrites(t *testing.T) {
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	l := Limits{MemoryBytes: 256 << 20, CPUWeight: 512, CapPercent: 50}

	root := t.TempDir()
	v2 := newCgroupsV2(filepath.Join(root, "ringfence"))
	if err := v2.Create("web01", l); err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(root, "ringfence", "web01")
	for file, want := range map[string]string{
		filepath.Join(root, "cgroup.subtree_control"):              "+cpu +memory",
		filepath.Join(root, "ringfence", "cgroup.subtree_control"): "+cpu +memory",
		filepath.Join(d, "cpu.weight"):                             "200",
		filepath.Join(d, "cpu.max"):                                "50000 100000",
		filepath.Join(d, "memory.max"):                             "268435456",
		filepath.Join(d, "memory.swap.max"):                        "0",
	} {
		if got := read(file); got != want {
			t.Errorf("v2 %s = %q, want %q", file, got, want)
		}
	}
	if got := v2.ProcsFiles("web01"); len(got) != 1 || got[0] != filepath.Join(d, "cgroup.procs") {
		t.Errorf("v2 procs files %v", got)
	}
	v2.Update("web01", Limits{MemoryBytes: 256 << 20})
	if got := read(filepath.Join(d, "cpu.max")); got != "max 100000" {
		t.Errorf("v2 cap removed: %q", got)
	}

	v1 := newCgroupsV1(filepath.Join(root, "cpu", "ringfence"), filepath.Join(root, "memory", "ringfence"))
	if err := v1.Create("web01", l); err != nil {
		t.Fatal(err)
	}
	cpu, mem := filepath.Join(root, "cpu", "ringfence", "web01"), filepath.Join(root, "memory", "ringfence", "web01")
	for file, want := range map[string]string{
		filepath.Join(cpu, "cpu.shares"):            "2048",
		filepath.Join(cpu, "cpu.cfs_quota_us"):      "50000",
		filepath.Join(cpu, "cpu.cfs_period_us"):     "100000",
		filepath.Join(mem, "memory.limit_in_bytes"): "268435456",
		filepath.Join(mem, "memory.swappiness"):     "0",
	} {
		if got := read(file); got != want {
			t.Errorf("v1 %s = %q, want %q", file, got, want)
		}
	}
}

// The domains' subtree weighs what its domains weigh together (at least
// one ordinary task, at most the kernel's maximum), on v1 and v2; under
// systemd's scope it is left to systemd.
func TestSubtreeWeight(t *testing.T) {
	read := func(p string) string { b, _ := os.ReadFile(p); return strings.TrimSpace(string(b)) }
	root := t.TempDir()
	v1base := filepath.Join(root, "cpu", "ringfence")
	v2base := filepath.Join(root, "v2", "ringfence")
	type step struct {
		domain string
		weight int // 0: the domain goes
		want   string
	}
	cases := []struct {
		name  string
		c     *Cgroups
		file  string
		steps []step
	}{
		{name: "v1", c: newCgroupsV1(v1base, filepath.Join(root, "memory", "ringfence")), file: filepath.Join(v1base, "cpu.shares"),
			steps: []step{{"a", 512, "2048"}, {"b", 256, "3072"}, {"b", 65535, "262144"}, {"a", 0, "262140"}, {"b", 0, "1024"}}},
		{name: "v2", c: newCgroupsV2(v2base), file: filepath.Join(v2base, "cpu.weight"),
			steps: []step{{"a", 512, "200"}, {"b", 256, "300"}, {"b", 65535, "10000"}, {"a", 0, "10000"}, {"b", 0, "100"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, st := range tc.steps {
				var err error
				if st.weight > 0 {
					err = tc.c.Create(st.domain, Limits{CPUWeight: st.weight})
				} else {
					for _, d := range tc.c.Dirs(st.domain) {
						os.RemoveAll(d) // cgroupfs removes a cgroup with its files; a temp dir does not
					}
					err = tc.c.balance()
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := read(tc.file); got != st.want {
					t.Fatalf("after %s weight %d: subtree %s = %q, want %q", st.domain, st.weight, filepath.Base(tc.file), got, st.want)
				}
			}
		})
	}
	scoped := newCgroupsV2(filepath.Join(root, "scope"))
	scoped.Scope = "ringfence-guests.scope"
	if err := scoped.Create("a", Limits{CPUWeight: 512}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "scope", "cpu.weight")); err == nil {
		t.Fatal("the systemd scope's weight was written")
	}
}

func TestDetectCgroups(t *testing.T) {
	dir := t.TempDir()
	mi := filepath.Join(dir, "mountinfo")
	cg := filepath.Join(dir, "cgroup")
	os.WriteFile(mi, []byte("30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"+
		"31 25 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"+
		"32 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"), 0o644)
	os.WriteFile(cg, []byte("4:memory:/sandbox/x\n1:cpu:/\n0::/\n"), 0o644)
	c, err := detectCgroups(mi, cg, "ringfence")
	if err != nil || c.Version != 1 || c.Dirs("d")[1] != "/sys/fs/cgroup/memory/sandbox/x/ringfence/d" {
		t.Fatalf("hybrid: %+v %v", c, err)
	}
	os.WriteFile(mi, []byte("30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"), 0o644)
	os.WriteFile(cg, []byte("0::/system.slice/ringfence.service\n"), 0o644)
	c, err = detectCgroups(mi, cg, "ringfence")
	if err != nil || c.Version != 2 || c.Dirs("d")[0] != "/sys/fs/cgroup/system.slice/ringfence.service/ringfence/d" {
		t.Fatalf("v2: %+v %v", c, err)
	}
}

func TestIDRangeCheck(t *testing.T) {
	dir := t.TempDir()
	w := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	passwd := w("passwd", "root:x:0:0::/root:/bin/sh\nodd:x:2000000100:2000000100::/:/bin/false\n")
	group := w("group", "root:x:0:\n")
	subuid := w("subuid", "alice:100000:65536\n")
	none := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		r    IDRange
		want string
	}{
		{DefaultIDRange, "odd's id 2000000100"},
		{IDRange{Base: 3_000_000_000, Count: 100}, ""},
		{IDRange{Base: 150000, Count: 10}, "subordinate ids 100000-165535"},
		{IDRange{Base: 10, Count: 10}, "BASE >= 1000"},
		{IDRange{}, ""},
	} {
		err := tc.r.Check(passwd, group, subuid, none)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.r, err, tc.want)
		}
	}
	if r, err := ParseIDRange("5000:10"); err != nil || r != (IDRange{5000, 10}) {
		t.Errorf("parse: %v %v", r, err)
	}
	if _, err := ParseIDRange("x"); err == nil {
		t.Error("a bad range parsed")
	}
}

// An OOM kill is read from each cgroup version's own files.
func TestMemoryEvents(t *testing.T) {
	dir := t.TempDir()
	v1 := newCgroupsV1(filepath.Join(dir, "cpu"), filepath.Join(dir, "mem"))
	m := filepath.Join(dir, "mem", "web01")
	os.MkdirAll(m, 0o755)
	os.WriteFile(filepath.Join(m, "memory.oom_control"), []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"), 0o644)
	os.WriteFile(filepath.Join(m, "memory.limit_in_bytes"), []byte("692060160\n"), 0o644)
	os.WriteFile(filepath.Join(m, "memory.max_usage_in_bytes"), []byte("692060160\n"), 0o644)
	os.WriteFile(filepath.Join(m, "memory.failcnt"), []byte("37\n"), 0o644)
	if ev := v1.MemoryEvents("web01"); ev != (MemEvents{OOMKills: 1, LimitB: 692060160, PeakB: 692060160, FailCount: 37}) {
		t.Errorf("v1: %+v", ev)
	}
	v2 := newCgroupsV2(filepath.Join(dir, "v2"))
	d := filepath.Join(dir, "v2", "web01")
	os.MkdirAll(d, 0o755)
	os.WriteFile(filepath.Join(d, "memory.events"), []byte("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n"), 0o644)
	os.WriteFile(filepath.Join(d, "memory.max"), []byte("692060160\n"), 0o644)
	os.WriteFile(filepath.Join(d, "memory.peak"), []byte("692060160\n"), 0o644)
	if ev := v2.MemoryEvents("web01"); ev != (MemEvents{OOMKills: 1, LimitB: 692060160, PeakB: 692060160, FailCount: 12}) {
		t.Errorf("v2: %+v", ev)
	}
}
