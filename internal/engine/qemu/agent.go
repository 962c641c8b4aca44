package qemu

// The guest agent (engine.GuestAgent) through qga: one call at a time
// per VM (the port takes one connection).

import (
	"context"
	"fmt"

	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/engine/qemu/qga"
)

func (i *instance) agent() qga.Client { return qga.Client{Path: agentPath(i.st.RunDir)} }

// AgentInfo implements engine.GuestAgent.
func (i *instance) AgentInfo(ctx context.Context) (engine.GuestInfo, error) {
	i.agentMu.Lock()
	defer i.agentMu.Unlock()
	var gi engine.GuestInfo
	ifs, err := i.agent().Interfaces(ctx)
	if err != nil {
		return gi, err
	}
	for _, f := range ifs {
		n := engine.GuestNIC{Name: f.Name, MAC: f.MAC}
		for _, a := range f.Addresses {
			n.Addresses = append(n.Addresses, fmt.Sprintf("%s/%d", a.IP, a.Prefix))
		}
		gi.NICs = append(gi.NICs, n)
	}
	if os, err := i.agent().OS(ctx); err == nil {
		gi.OS, gi.Kernel = os.PrettyName, os.KernelRelease
	}
	return gi, nil
}

// AgentShutdown implements engine.GuestAgent.
func (i *instance) AgentShutdown(ctx context.Context) error {
	i.agentMu.Lock()
	defer i.agentMu.Unlock()
	return i.agent().Shutdown(ctx)
}

// AgentFreeze implements engine.GuestAgent.
func (i *instance) AgentFreeze(ctx context.Context) (int, error) {
	i.agentMu.Lock()
	defer i.agentMu.Unlock()
	return i.agent().Freeze(ctx)
}

// AgentThaw implements engine.GuestAgent.
func (i *instance) AgentThaw(ctx context.Context) (int, error) {
	i.agentMu.Lock()
	defer i.agentMu.Unlock()
	return i.agent().Thaw(ctx)
}

// AgentExec implements engine.GuestAgent.
func (i *instance) AgentExec(ctx context.Context, argv []string, stdin []byte) (engine.GuestExec, error) {
	i.agentMu.Lock()
	defer i.agentMu.Unlock()
	r, err := i.agent().Exec(ctx, argv, stdin)
	return engine.GuestExec{ExitCode: r.ExitCode, Stdout: r.Stdout, Stderr: r.Stderr}, err
}

// AgentSetPassword implements engine.GuestAgent.
func (i *instance) AgentSetPassword(ctx context.Context, user, password string) error {
	i.agentMu.Lock()
	defer i.agentMu.Unlock()
	return i.agent().SetPassword(ctx, user, password)
}
