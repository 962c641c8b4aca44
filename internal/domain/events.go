package domain

import (
	"context"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/engine"
)

// Publisher takes the events the manager emits (internal/events.Bus);
// Publish must not block.
type Publisher interface {
	Publish(api.Event)
}

// subject is the domain an event is about: its name, who asked (ctx),
// and its tenant as it was when the verb began (a destroy removes the
// domain, yet its event must reach its tenant; a create makes it, and
// its tenant is read at the end).
type subject struct {
	ctx          context.Context
	name, tenant string
}

// about is the subject of a verb on name, as it begins (takes m.mu).
func (m *Manager) about(ctx context.Context, name string) subject {
	tenant, _ := m.Owner(name)
	return subject{ctx: ctx, name: name, tenant: tenant}
}

// emit publishes a lifecycle event of a domain (nothing when Options.Events
// is nil). The actor is the principal of ctx, when a request carried one
// (nil for the guest itself and the host). It takes m.mu for the domain's
// tenant: callers hold no lock.
func (m *Manager) emit(ctx context.Context, name, action, detail string) {
	m.emitAbout(subject{ctx: ctx, name: name}, action, detail)
}

// emitAbout publishes s's event, for its tenant's subscribers (and the
// host's).
func (m *Manager) emitAbout(s subject, action, detail string) {
	if m.o.Events == nil {
		return
	}
	if s.tenant == "" {
		s.tenant, _ = m.Owner(s.name)
	}
	m.o.Events.Publish(api.Event{Type: api.EventLifecycle, Action: action, Domain: s.name, Tenant: s.tenant, Detail: detail, Actor: actorOf(s.ctx)})
}

// actorOf is the principal of ctx as an event's actor (nil: none).
func actorOf(ctx context.Context) *api.Actor {
	p := auth.FromContext(ctx)
	if p.Role == "" {
		return nil
	}
	return &api.Actor{Name: p.Name, Kind: string(p.Kind), Role: string(p.Role), Remote: p.Remote}
}

// emitIf emits the event when err is nil, and returns err: for the verbs
// whose result is only an error.
func (m *Manager) emitIf(ctx context.Context, name, action, detail string, err error) error {
	if err == nil {
		m.emit(ctx, name, action, detail)
	}
	return err
}

// after emits the event when the verb's result *err is nil: deferred at
// a verb's start as `defer m.after(m.about(ctx, name), ...)`, so the
// subject is read then (after its d.mu is let go, as defers run
// last-first).
func (m *Manager) after(s subject, action, detail string, err *error) {
	if *err == nil {
		m.emitAbout(s, action, detail)
	}
}

// emitExit publishes how an incarnation ended: shut down or rebooted
// (naming who pressed the power button, if anyone did), or crashed (no
// actor). An end a destroy caused is said by Destroy, with who asked.
// Caller holds d.mu.
func (m *Manager) emitExit(d *dom, ex engine.Exit, state api.State) {
	asked := d.askedBy
	d.askedBy = nil
	if m.o.Events == nil || (d.intent == "destroy" || d.destroying.Load()) && !d.hostStop.Load() {
		return
	}
	ev := api.Event{Type: api.EventLifecycle, Action: api.EvShutdown, Domain: d.rec.Spec.Name, Tenant: d.tenant, Detail: d.rec.LastReason}
	switch {
	case state == api.StateCrashed:
		ev.Action = api.EvCrashed
	case ex.Reason == engine.ExitReboot || d.intent == "reboot":
		ev.Action, ev.Actor = api.EvRebooted, asked
	default:
		ev.Actor = asked
	}
	m.o.Events.Publish(ev)
}
