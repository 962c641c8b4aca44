package domain

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/safefile"
	"github.com/ringfence/ringfence/internal/storage"
)

// platform is the running domain's instance with the ability to take
// platform events, or why it has none.
func (m *Manager) platform(name string) (engine.PlatformEvents, error) {
	_, inst, err := m.running(name)
	if err != nil {
		return nil, err
	}
	pe, ok := inst.(engine.PlatformEvents)
	if !ok {
		return nil, api.Errorf(api.ErrUnavailable, "this engine cannot send keys or inject events")
	}
	return pe, nil
}

// SysRq sends Magic SysRq KEY to a Linux guest (xl sysrq): the keyboard
// chord Alt+SysRq+KEY. The guest acts on it when kernel.sysrq allows.
func (m *Manager) SysRq(ctx context.Context, name, key string) error {
	if len(key) != 1 || !(key[0] >= 'a' && key[0] <= 'z' || key[0] >= '0' && key[0] <= '9') {
		return api.Errorf(api.ErrInvalid, "sysrq key %q: one lowercase letter or digit (h lists them in the guest's log)", key)
	}
	pe, err := m.platform(name)
	if err != nil {
		return err
	}
	if err := pe.SendKeys(ctx, []string{"alt", "sysrq", key}); err != nil {
		return fmt.Errorf("sending sysrq %s to %s: %w", key, name, err)
	}
	return nil
}

// Trigger injects a platform event (xl trigger). reset and power are the
// reset and shutdown verbs (so on_reboot and the events follow as they
// do); sleep and init are xl's that QEMU cannot inject.
func (m *Manager) Trigger(ctx context.Context, name, event string) error {
	switch event {
	case api.TriggerReset:
		return m.Reset(ctx, name)
	case api.TriggerPower:
		return m.Shutdown(ctx, name, api.ShutdownRequest{})
	case api.TriggerSleep:
		return api.Errorf(api.ErrInvalid, "trigger sleep: QEMU has no ACPI sleep button to press; suspend from inside the guest (echo mem > /sys/power/state) and wake it with `trigger %s s3resume`", name)
	case api.TriggerInit:
		return api.Errorf(api.ErrInvalid, "trigger init: QEMU cannot inject an INIT IPI; use nmi, reset or power")
	case api.TriggerNMI, api.TriggerS3Resume:
	default:
		return api.Errorf(api.ErrInvalid, "trigger %q: one of nmi, reset, power, s3resume (sleep and init are xl's that QEMU cannot inject)", event)
	}
	pe, err := m.platform(name)
	if err != nil {
		return err
	}
	if event == api.TriggerNMI {
		err = pe.InjectNMI(ctx)
	} else {
		err = pe.Wakeup(ctx)
	}
	if err != nil {
		return fmt.Errorf("trigger %s on %s: %w", event, name, err)
	}
	return nil
}

// DumpCore writes the guest's memory to path as an ELF core (xl
// dump-core; crash(8) and gdb read it). The file is new, root-only, and
// appears only once complete. QEMU stops the vCPUs for the dump and
// resumes them afterwards.
func (m *Manager) DumpCore(ctx context.Context, name, path string, progress func(api.JobProgress)) (api.DumpCoreResult, error) {
	res := api.DumpCoreResult{Path: path}
	if !filepath.IsAbs(path) {
		return res, api.Errorf(api.ErrInvalid, "core file %q must be an absolute path", path)
	}
	if _, err := os.Lstat(path); err == nil {
		return res, api.Errorf(api.ErrConflict, "core file %s exists: give a new path (a core is never written over a file)", path)
	}
	if m.o.Policy != nil {
		if err := m.o.Policy.Check(storage.UseNew, path); err != nil {
			return res, err
		}
	}
	d, err := m.lockRunning(name)
	if err != nil {
		return res, err
	}
	defer d.mu.Unlock()
	cd, ok := d.inst.(engine.CoreDumper)
	if !ok {
		return res, api.Errorf(api.ErrUnavailable, "this engine cannot dump a guest's memory")
	}
	f, err := safefile.Create(path)
	if err != nil {
		return res, api.Errorf(api.ErrInvalid, "creating %s: %v", path, err)
	}
	defer f.Abort() // a no-op once committed
	err = cd.DumpCore(ctx, f.File, func(done, total int64) {
		if progress != nil {
			progress(api.JobProgress{Phase: "dumping", Done: done, Total: total})
		}
	})
	if err != nil {
		return res, fmt.Errorf("dumping the memory of %s: %w", name, err)
	}
	if fi, err := f.Stat(); err == nil {
		res.Bytes = fi.Size()
	}
	if err := f.CommitNoReplace(); err != nil {
		return res, api.Errorf(api.ErrConflict, "keeping %s: %v", path, err)
	}
	return res, nil
}
