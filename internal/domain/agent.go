package domain

// The guest agent of a running domain (spec.GuestAgent): what the guest
// says about itself, a command run in it, a user's password set in it
// (the provider's rescue path), and its filesystems frozen around a
// snapshot, an export or a live clone. The instance is read without
// d.mu: a slow guest never holds up the domain's other verbs, and every
// call is bounded (engine.GuestAgent).

import (
	"context"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
)

// How long an agent call may take: what the agent answers itself, and
// what runs something in the guest (chpasswd, fsfreeze with its hook,
// sync), which a loaded guest (TCG) takes seconds for.
const (
	agentInfoTimeout = 10 * time.Second
	agentWorkTimeout = 60 * time.Second
)

// agentOf is a running domain's agent.
func (m *Manager) agentOf(name string) (engine.GuestAgent, error) {
	d, err := m.get(name)
	if err != nil {
		return nil, err
	}
	return d.agent(name)
}

func (d *dom) agent(name string) (engine.GuestAgent, error) {
	if v := d.snap.Load(); v == nil || !v.Spec.GuestAgent {
		return nil, api.Errorf(api.ErrInvalid, "%s has no guest agent port: guest_agent = 1 in its domain file (on for domains made with --image), then restart it", name)
	}
	li := d.live.Load()
	if li == nil {
		return nil, api.Errorf(api.ErrConflict, "%s is not running", name)
	}
	ga, ok := li.Instance.(engine.GuestAgent)
	if !ok {
		return nil, api.Errorf(api.ErrUnavailable, "this engine cannot reach a guest agent")
	}
	return ga, nil
}

// agentErr says what to do when the agent does not answer.
func agentErr(name string, err error) error {
	return api.Errorf(api.ErrUnavailable, "%s: %v; is qemu-guest-agent installed and running in the guest? (it starts once the guest has booted)", name, err)
}

// GuestInfo is what the agent of a running domain says: its OS and its
// interfaces' addresses.
func (m *Manager) GuestInfo(ctx context.Context, name string) (api.GuestInfo, error) {
	ga, err := m.agentOf(name)
	if err != nil {
		return api.GuestInfo{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, agentInfoTimeout)
	defer cancel()
	gi, err := ga.AgentInfo(ctx)
	if err != nil {
		return api.GuestInfo{}, agentErr(name, err)
	}
	out := api.GuestInfo{OS: gi.OS, Kernel: gi.Kernel, NICs: []api.GuestNIC{}}
	for _, n := range gi.NICs {
		out.NICs = append(out.NICs, api.GuestNIC{Name: n.Name, MAC: n.MAC, Addresses: n.Addresses})
	}
	return out, nil
}

// GuestExec runs a command in a running domain's guest.
func (m *Manager) GuestExec(ctx context.Context, name string, req api.GuestExecRequest) (api.GuestExecResult, error) {
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return api.GuestExecResult{}, api.Errorf(api.ErrInvalid, "exec needs a command: ringfence exec NAME -- CMD [ARG...]")
	}
	ga, err := m.agentOf(name)
	if err != nil {
		return api.GuestExecResult{}, err
	}
	t := time.Duration(req.TimeoutSec) * time.Second
	if t <= 0 {
		t = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	r, err := ga.AgentExec(ctx, req.Argv, req.Stdin)
	if err != nil {
		return api.GuestExecResult{}, agentErr(name, err)
	}
	return api.GuestExecResult{ExitCode: r.ExitCode, Stdout: r.Stdout, Stderr: r.Stderr}, nil
}

// SetGuestPassword sets a user's password in a running domain's guest.
func (m *Manager) SetGuestPassword(ctx context.Context, name string, req api.GuestPasswordRequest) (err error) {
	defer m.after(m.about(ctx, name), api.EvGuestPassword, req.User, &err)
	if req.User == "" || req.Password == "" {
		return api.Errorf(api.ErrInvalid, "set-password needs a user and a password")
	}
	ga, err := m.agentOf(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, agentWorkTimeout)
	defer cancel()
	if err := ga.AgentSetPassword(ctx, req.User, req.Password); err != nil {
		return agentErr(name, err)
	}
	return nil
}

// agentShutdown asks the guest's agent to power off; false when the
// domain has no agent or it does not answer (ACPI is then used).
func (m *Manager) agentShutdown(ctx context.Context, d *dom, name string) bool {
	ga, err := d.agent(name)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, agentWorkTimeout)
	defer cancel()
	if err := ga.AgentShutdown(ctx); err != nil {
		m.o.Log.Info("guest agent shutdown failed; pressing the power button", "domain", name, "err", err)
		return false
	}
	return true
}

// freezeGuest freezes a running domain's filesystems through its agent
// so a copy of its disks is application-consistent, and returns the
// thaw. A domain without an agent, or whose agent does not answer, is
// copied crash-consistent as before (logged), never refused.
func (m *Manager) freezeGuest(ctx context.Context, d *dom, name string) (thaw func()) {
	ga, err := d.agent(name)
	if err != nil {
		return func() {}
	}
	fctx, cancel := context.WithTimeout(ctx, agentWorkTimeout)
	defer cancel()
	if _, err := ga.AgentFreeze(fctx); err != nil {
		m.o.Log.Info("guest agent freeze failed; the copy is crash-consistent", "domain", name, "err", err)
		// A freeze that timed out may still happen: thaw to be sure.
		tctx, tcancel := context.WithTimeout(context.Background(), agentWorkTimeout)
		ga.AgentThaw(tctx)
		tcancel()
		return func() {}
	}
	return func() {
		tctx, tcancel := context.WithTimeout(context.Background(), agentWorkTimeout)
		defer tcancel()
		if _, err := ga.AgentThaw(tctx); err != nil {
			m.o.Log.Error("guest agent thaw failed: the guest's filesystems may stay frozen", "domain", name, "err", err)
		}
	}
}
