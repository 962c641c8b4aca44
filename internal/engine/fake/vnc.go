package fake

import (
	"context"

	"github.com/ringfence/ringfence/internal/engine"
)

// VNCPath implements engine.VNCDisplay: a socket that greets each
// client with RFB's version line (LaunchSpec.VNC; "" without).
func (i *Instance) VNCPath() string { return i.vm.vnc }

// SetVNCPassword implements engine.VNCDisplay.
func (i *Instance) SetVNCPassword(_ context.Context, password string) error {
	v := i.vm
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.ended {
		return ErrGone
	}
	v.vncPass, v.vncPassAt = password, v.state
	return nil
}

// VNCPassword is the VNC password set, and the VM's state when it was.
func (i *Instance) VNCPassword() (string, engine.RunState) {
	i.vm.mu.Lock()
	defer i.vm.mu.Unlock()
	return i.vm.vncPass, i.vm.vncPassAt
}
