// Package host knows the facts of the machine Ringfence runs on (CPUs,
// memory, which accelerator works) and keeps the memory ledger that
// admits domains without overselling.
package host

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/ringfence/ringfence/internal/procfs"
)

// Accel is the accelerator decision and why it was made.
type Accel struct {
	Name   string // kvm or tcg
	Reason string
}

// ProbeAccel picks KVM only when /dev/kvm opens read-write AND the CPU
// advertises hardware virtualization (vmx/svm). A /dev/kvm without those
// flags (a nested PVM device, for instance) cannot run ordinary guest
// kernels, so we say so and use TCG.
func ProbeAccel(cpuinfo, devKVM string) Accel {
	f, err := os.OpenFile(devKVM, os.O_RDWR, 0)
	if err != nil {
		return Accel{"tcg", fmt.Sprintf("%s cannot be opened (%v): using TCG software emulation", devKVM, err)}
	}
	f.Close()
	b, err := os.ReadFile(cpuinfo)
	if err != nil {
		return Accel{"tcg", fmt.Sprintf("reading %s: %v: using TCG", cpuinfo, err)}
	}
	if !hasVirtFlag(string(b)) {
		return Accel{"tcg", fmt.Sprintf("%s exists but the CPU has no vmx/svm flag (nested or paravirtual KVM): using TCG software emulation", devKVM)}
	}
	return Accel{"kvm", "hardware virtualization (vmx/svm) and /dev/kvm available"}
}

func hasVirtFlag(cpuinfo string) bool {
	sc := bufio.NewScanner(strings.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "flags") {
			continue
		}
		_, flags, _ := strings.Cut(line, ":")
		for _, fl := range strings.Fields(flags) {
			if fl == "vmx" || fl == "svm" {
				return true
			}
		}
		return false // the first CPU is representative
	}
	return false
}

// Memory is /proc/meminfo's totals in MiB.
type Memory struct {
	TotalMiB     int
	AvailableMiB int
}

// ReadMemory reads /proc/meminfo.
func ReadMemory() (Memory, error) {
	mi, err := procfs.MemInfo()
	if err != nil {
		return Memory{}, err
	}
	return Memory{TotalMiB: int(mi["MemTotal"] / 1024), AvailableMiB: int(mi["MemAvailable"] / 1024)}, nil
}

// CPUs is the number of online host CPUs.
func CPUs() int { return runtime.NumCPU() }
