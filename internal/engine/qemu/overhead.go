package qemu

import (
	"fmt"

	"github.com/ringfence/ringfence/internal/engine"
)

// TCGBufferMiB caps TCG's translation buffer (-accel tcg,tb-size=N).
// Uncapped, QEMU 7.2 reserves 1 GiB for it and a real Debian guest filled
// about 420 MiB of that within a minute of booting; capped at 128 MiB the
// same boot took as long (bench/overhead) and the buffer stays bounded,
// so the domain's memory guarantee can count it. Small guests run little
// code: a quarter of their RAM, at least 32 MiB, is enough for them.
const (
	TCGBufferMiB    = 128
	TCGBufferMinMiB = 32
)

// TCGBufferFor is the translation buffer of a guest with ramMiB of RAM.
func TCGBufferFor(ramMiB int) int {
	return min(TCGBufferMiB, max(TCGBufferMinMiB, ramMiB/4))
}

// QEMU's memory beyond guest RAM, measured (bench/overhead, see
// bench/README.md): a fixed part (QEMU's own heap, libraries, device
// model, the console and monitor), the translation buffer under TCG, a
// per-vCPU part (thread stacks, TCG's softmmu TLBs) and a part that
// grows with guest RAM (dirty bitmaps, page tables of QEMU itself). The
// figures carry a margin over the highest peak measured, so the cgroup
// limit built on them does not kill a real guest.
const (
	tcgFixedMiB   = 112
	kvmFixedMiB   = 64
	perVCPUMiB    = 8
	ramDivisorTCG = 32 // + guest RAM / 32 under TCG
	ramDivisorKVM = 64
	// displayMiB is a VNC display's (LaunchSpec.VNC): the VGA card's 16
	// MiB of video memory and the VNC server's copy of the screen, each
	// filled only as far as the guest's mode needs (1.3 MiB more than
	// no display at 720x400 text mode here), plus encoder buffers: the
	// figure covers the largest mode 16 MiB holds.
	displayMiB = 40
)

// OverheadMiB implements engine.OverheadEstimator.
func (e *Engine) OverheadMiB(s engine.LaunchSpec) int {
	vcpus := s.MaxVCPUs
	if vcpus < s.VCPUs {
		vcpus = s.VCPUs
	}
	display := 0
	if s.VNC {
		display = displayMiB
	}
	if s.Accel == "kvm" {
		return kvmFixedMiB + perVCPUMiB*vcpus + s.MemoryMiB/ramDivisorKVM + display
	}
	return tcgFixedMiB + TCGBufferFor(s.MemoryMiB) + perVCPUMiB*vcpus + s.MemoryMiB/ramDivisorTCG + display
}

// OverheadModel implements engine.OverheadEstimator.
func (e *Engine) OverheadModel(accel string) string {
	if accel == "kvm" {
		return fmt.Sprintf("%d MiB + %d MiB per vCPU + guest RAM/%d (+ %d MiB with VNC; measured on TCG hosts; KVM figure documented, not yet measured here)", kvmFixedMiB, perVCPUMiB, ramDivisorKVM, displayMiB)
	}
	return fmt.Sprintf("%d MiB + translation buffer (tb-size: guest RAM/4, %d..%d MiB) + %d MiB per vCPU + guest RAM/%d (+ %d MiB with VNC)", tcgFixedMiB, TCGBufferMinMiB, TCGBufferMiB, perVCPUMiB, ramDivisorTCG, displayMiB)
}
