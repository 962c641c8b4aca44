// Package resources benchmarks the admission decision (run with
// `go test -bench . ./bench/resources`); main.go measures a top refresh
// against a real daemon.
package resources

import (
	"fmt"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/host"
)

// BenchmarkAdmission200 is one admission decision (reserve + release) on a
// ledger already holding 200 domains.
func BenchmarkAdmission200(b *testing.B) {
	l := host.NewLedger(1<<20, 1024, 64, 4)
	for i := 0; i < 200; i++ {
		if err := l.Reserve(api.LedgerEntry{Domain: fmt.Sprintf("d%03d", i), MemoryMiB: 1024, OverheadMiB: 144, VCPUs: 1}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := l.Reserve(api.LedgerEntry{Domain: "new", MemoryMiB: 1024, OverheadMiB: 144, VCPUs: 1}); err != nil {
			b.Fatal(err)
		}
		l.Release("new")
	}
}

// BenchmarkRefusal200 is a refused admission, which also names who holds
// the memory (the slower path).
func BenchmarkRefusal200(b *testing.B) {
	l := host.NewLedger(200*1200, 1024, 64, 4)
	for i := 0; i < 200; i++ {
		l.Reserve(api.LedgerEntry{Domain: fmt.Sprintf("d%03d", i), MemoryMiB: 1024, OverheadMiB: 144, VCPUs: 1})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := l.Reserve(api.LedgerEntry{Domain: "new", MemoryMiB: 1 << 20, OverheadMiB: 144, VCPUs: 1}); err == nil {
			b.Fatal("admitted")
		}
	}
}
