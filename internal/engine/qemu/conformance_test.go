package qemu

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/engine/enginetest"
)

// The default guest image (see internal/image), where the e2e suite keeps
// it: RINGFENCE_IMAGE_DIR, or /var/lib/ringfence/images/default.
func guestImage() (kernel, initrd string) {
	dir := os.Getenv("RINGFENCE_IMAGE_DIR")
	if dir == "" {
		dir = "/var/lib/ringfence/images/default"
	}
	return dir + "/vmlinuz", dir + "/initrd.img"
}

// TestConformance runs the engine suite against real QEMU: one small
// guest at a time (TCG, no disks, no network), booted only where the
// contract needs a guest (the power button, migration).
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU (about 10s under TCG): not with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (QEMU is started as the daemon starts it)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("needs qemu-system-x86_64 in PATH")
	}
	kernel, initrd := guestImage()
	for _, f := range []string{kernel, initrd} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("needs the default guest image (ringfence image default; or set RINGFENCE_IMAGE_DIR): %v", err)
		}
	}
	enginetest.Run(t, func(t *testing.T) enginetest.Setup {
		return enginetest.Setup{
			Engine: New(""),
			Spec: func(t *testing.T) engine.LaunchSpec {
				return engine.LaunchSpec{Name: "conformance", Accel: "tcg", MemoryMiB: 128, VCPUs: 1, Balloon: true,
					Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0 quiet", RunDir: t.TempDir()}
			},
			ErrGone: ErrGone,
			// QMP takes one client: a daemon that exits closes its
			// monitor. (The old handle then kills the VM after 10s
			// unless it has ended: the subtest is done by then.)
			Forget:      func(i engine.Instance) { i.(*instance).mon.Close() },
			Powerdown:   true,
			Migrate:     true,
			ExitTimeout: 90 * time.Second,
		}
	})
}
