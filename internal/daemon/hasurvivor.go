package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/cluster"
	"github.com/ringfence/ringfence/internal/store"
)

// A survivor restarts an HA domain whose owner failed: the owner key is
// gone (its owner's lease expired, so the owner has fenced), haGuard has
// passed, and this host is the first in placement's order (the others
// follow haStagger apart, should it fail). The takeover is one
// transaction (cluster.Takeover); the domain starts from the definition
// in its cluster record, with QEMU's image locks on.

// watch follows the owner keys from rev, once: a delete is a takeover's
// candidate (the loop starts it again if it ends).
func (h *haRuntime) watch(ctx context.Context, rev int64) {
	h.mu.Lock()
	if h.watching {
		h.mu.Unlock()
		return
	}
	h.watching = true
	h.mu.Unlock()
	ch, err := h.s.cluster.WatchOwners(ctx, rev)
	if err != nil {
		h.setWatching(false)
		return
	}
	go func() {
		defer h.setWatching(false)
		for ev := range ch {
			if ev.Err != nil {
				return
			}
			if ev.Type == store.EventDelete {
				h.ownerGone(ctx, cluster.OwnerKeyDomain(ev.Key), ev.Rev)
			}
		}
	}()
}

func (h *haRuntime) setWatching(on bool) {
	h.mu.Lock()
	h.watching = on
	h.mu.Unlock()
}

// ownerGone notes a deleted owner key: its domain is a candidate unless
// it was this host's.
func (h *haRuntime) ownerGone(ctx context.Context, name string, rev int64) {
	seen := time.Now()
	from, err := h.s.cluster.Owner(ctx, name)
	if err != nil || from == "" || from == h.s.cluster.Name() {
		return
	}
	h.mu.Lock()
	if h.pending[name] == nil {
		h.pending[name] = &takeover{from: from, gone: rev, seen: seen}
	}
	h.mu.Unlock()
}

// survey reads the cluster's HA domains: a running one whose host is
// down and that has no owner is a candidate (a delete this host did not
// see); one another host has now is forgotten here when stopped here.
func (h *haRuntime) survey(ctx context.Context, owners map[string]string) {
	recs, err := h.s.cluster.Domains(ctx)
	if err != nil {
		return
	}
	rooms, err := h.s.cluster.Rooms(ctx)
	if err != nil {
		return
	}
	alive := map[string]bool{}
	for _, r := range rooms {
		alive[r.Host] = r.Alive
	}
	me := h.s.cluster.Name()
	for _, r := range recs {
		name := r.Domain.Spec.Name
		if !r.Domain.Spec.HA || r.Host == me {
			continue
		}
		h.forgetTaken(ctx, name, r.Host)
		running := r.Domain.State == api.StateRunning || r.Domain.State == api.StateBlocked || r.Domain.State == api.StatePaused
		if owners[name] != "" || alive[r.Host] || !running {
			continue
		}
		h.mu.Lock()
		if h.pending[name] == nil {
			h.pending[name] = &takeover{from: r.Host, seen: time.Now()}
		}
		h.mu.Unlock()
	}
}

// forgetTaken removes this host's stopped copy of an HA domain another
// host now has (this host fenced it, a survivor took it): it is never
// started here again. Its disks are untouched (they are the domain's,
// on the other host now).
func (h *haRuntime) forgetTaken(ctx context.Context, name, host string) {
	if h.forgetStopped(ctx, name) {
		h.s.log.Warn("ha: forgot this host's stopped copy of an HA domain another host runs now", "name", name, "host", host)
	}
}

// forgetStopped removes a stopped local copy of an HA domain (its
// definition too); it reports whether there was one.
func (h *haRuntime) forgetStopped(ctx context.Context, name string) bool {
	d, err := h.s.mgr.Get(name)
	if err != nil || d.PID != 0 || !d.Spec.HA {
		return false
	}
	if d.Defined {
		err = h.s.mgr.Undefine(ctx, name)
	} else {
		err = h.s.mgr.Destroy(ctx, name)
	}
	if err != nil {
		h.s.log.Warn("ha: removing a stopped copy of an HA domain", "name", name, "err", err)
	}
	return err == nil
}

// takeovers runs the candidates whose time has come, every 100 ms.
func (h *haRuntime) takeovers(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		var due []string
		for name, tk := range h.pending {
			if time.Since(tk.seen) >= haGuard {
				due = append(due, name)
			}
		}
		h.mu.Unlock()
		for _, name := range due {
			h.consider(ctx, name)
		}
	}
}

// consider takes one candidate over if this host's turn has come.
func (h *haRuntime) consider(ctx context.Context, name string) {
	h.mu.Lock()
	tk := h.pending[name]
	until := h.refused[name]
	h.mu.Unlock()
	if tk == nil {
		return
	}
	turn, err := h.turn(ctx, name, tk.from)
	if err != nil || turn < 0 || time.Now().Before(until) {
		h.drop(name, tk)
		return
	}
	if time.Since(tk.seen) < haGuard+time.Duration(turn)*haStagger {
		return
	}
	h.drop(name, tk)
	h.takeOver(ctx, name, tk)
}

func (h *haRuntime) drop(name string, tk *takeover) {
	h.mu.Lock()
	if h.pending[name] == tk {
		delete(h.pending, name)
	}
	h.mu.Unlock()
}

// turn is this host's place in placement's order for the domain (every
// survivor computes the same from the same figures); -1: not a
// candidate.
func (h *haRuntime) turn(ctx context.Context, name, from string) (int, error) {
	recs, err := h.s.cluster.Domains(ctx)
	if err != nil {
		return -1, err
	}
	rooms, err := h.s.cluster.Rooms(ctx)
	if err != nil {
		return -1, err
	}
	for i := range rooms {
		if rooms[i].Host == from {
			rooms[i].Alive = false
		}
	}
	for _, r := range recs {
		if r.Domain.Spec.Name != name {
			continue
		}
		mem, cpus := h.s.mgr.NeedOf(r.Domain.Spec)
		order, err := cluster.Place(cluster.Need{Name: name, MemMiB: mem, VCPUs: cpus}, rooms)
		if err != nil {
			h.refuse(name, err.Error())
			return -1, nil
		}
		for i, host := range order {
			if host == h.s.cluster.Name() {
				return i, nil
			}
		}
	}
	return -1, nil
}

// takeOver runs the transaction and starts the domain; a start that
// fails gives the domain back for the next survivor.
func (h *haRuntime) takeOver(ctx context.Context, name string, tk *takeover) {
	ev := api.HATakeover{Domain: name, From: tk.from, To: h.s.cluster.Name(), ExpirySeenNs: tk.seen.UnixNano()}
	spec, err := h.s.cluster.Takeover(ctx, name, tk.from, tk.gone)
	if errors.Is(err, cluster.ErrTaken) {
		h.s.log.Info("ha: no takeover", "name", name, "why", err)
		return
	}
	if err != nil {
		h.refuse(name, "the takeover transaction failed: "+err.Error())
		return
	}
	ev.TxnNs = time.Now().UnixNano()
	// A stopped copy here (it failed over from here once) gives way to
	// the definition the cluster has.
	h.forgetStopped(ctx, name)
	spec.Persistent = true
	if _, err := h.s.mgr.Create(ctx, api.CreateRequest{Spec: spec}); err != nil {
		h.s.cluster.GiveBack(ctx, name, tk.from)
		h.mu.Lock()
		h.refused[name] = time.Now().Add(haRefusedFor)
		h.mu.Unlock()
		h.refuse(name, "starting it here failed (given back for the next survivor): "+err.Error())
		return
	}
	ev.QEMUStarted = time.Now().UnixNano()
	h.s.log.Warn(api.EvHATakeover, "domain", name, "from", ev.From, "to", ev.To,
		"expiry_seen", ev.ExpirySeenNs, "txn", ev.TxnNs, "qemu_started", ev.QEMUStarted)
	h.publish(api.EvHATakeover, name, ev)
}

// refuse announces what HA did not do.
func (h *haRuntime) refuse(name, why string) {
	h.s.log.Warn(api.EvHARefused, "domain", name, "why", why)
	h.publish(api.EvHARefused, name, api.HARefused{Domain: name, Why: why})
}
