package host

import (
	"errors"
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
	l := NewLedger(4096, 1024)
	if err := l.Reserve("a", 1024, 112); err != nil {
		t.Fatal(err)
	}
	if err := l.Reserve("b", 1024, 112); err != nil {
		t.Fatal(err)
	}
	err := l.Reserve("c", 1024, 112)
	if !errors.Is(err, api.ErrInsufficient) || !strings.Contains(err.Error(), "asks 1136 MiB") || !strings.Contains(err.Error(), "800 MiB free of 4096") {
		t.Fatalf("oversell not refused clearly: %v", err)
	}
	if s := l.Snapshot(); s.FreeMiB != 800 || len(s.Entries) != 2 {
		t.Fatalf("snapshot %+v", s)
	}
	l.Release("a")
	l.Release("a")
	if err := l.Reserve("c", 1024, 112); err != nil {
		t.Fatalf("after release: %v", err)
	}
}
