package daemon

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/domain"
	"github.com/ringfence/ringfence/internal/revert"
)

// coldMove moves a domain created paused that never ran (nothing to
// migrate) to another host: it ends here (and its definition is
// dropped), its record leaves the cluster, and the target creates it
// paused (defined again if it was). Its disks are opened by one QEMU at
// a time (the image locks). If the target refuses, it is made again
// here, paused, as it was.
type coldMove struct {
	ev   *evacuation
	name string
	u    domain.Unstarted
	rv   *revert.Reverter
}

func (ev *evacuation) coldMoveTo(ctx context.Context, name string, u domain.Unstarted, host string) error {
	cm := &coldMove{ev: ev, name: name, u: u, rv: revert.New()}
	defer cm.rv.Fail()
	if err := cm.leaveHere(ctx); err != nil {
		return err
	}
	if err := cm.createOn(ctx, host); err != nil {
		return err
	}
	cm.rv.Success()
	ev.s.log.Info("cluster: a never-run paused domain moved cold", "name", name, "to", host)
	return nil
}

// endHere destroys it here (and undefines it); the revert makes it again.
func (cm *coldMove) endHere(ctx context.Context) error {
	mgr := cm.ev.s.mgr
	if err := mgr.Destroy(ctx, cm.name); err != nil {
		return err
	}
	req := api.CreateRequest{Spec: cm.u.Spec, Paused: true, Tenant: cm.u.Tenant, Persistent: cm.u.Defined}
	cm.rv.Add(func() {
		ctx := context.WithoutCancel(ctx)
		if cm.u.Defined {
			_, err := mgr.Start(ctx, cm.name, true)
			cm.ev.s.logUndo("starting it again here, paused", cm.name, err)
			return
		}
		_, err := mgr.Create(ctx, req)
		cm.ev.s.logUndo("making it again here, paused", cm.name, err)
	})
	if !cm.u.Defined {
		return nil
	}
	if err := mgr.Undefine(ctx, cm.name); err != nil {
		return err
	}
	cm.rv.Add(func() {
		_, err := mgr.Define(context.WithoutCancel(ctx), cm.u.Spec, cm.u.Tenant)
		cm.ev.s.logUndo("defining it again here", cm.name, err)
	})
	return nil
}

// leaveHere ends it here and drops its record from the cluster at once,
// so the target may take the name: with no publish of this host's
// domains in between (one from a list read before the end would put
// the record back).
func (cm *coldMove) leaveHere(ctx context.Context) error {
	s := cm.ev.s
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	if err := cm.endHere(ctx); err != nil {
		return err
	}
	_, err := s.cluster.Publish(ctx, s.mgr.List(true))
	return err
}

// createOn creates it paused on host (defined there if it was here).
func (cm *coldMove) createOn(ctx context.Context, host string) error {
	body, _ := json.Marshal(api.CreateRequest{Spec: cm.u.Spec, Paused: true, Tenant: cm.u.Tenant, Persistent: cm.u.Defined})
	out, err := cm.ev.s.forwardTo(ctx, host, api.ForwardCall{Method: "POST", Path: "/domains", Body: body,
		Role: string(auth.Admin), Caller: "evacuation of " + cm.ev.me})
	if err != nil {
		return err
	}
	if err := refusedForRoom(out); err != nil {
		return err
	}
	var op api.Operation
	var eb api.ErrorBody
	switch {
	case out.Status == http.StatusAccepted && json.Unmarshal(out.Body, &op) == nil:
		return op.Err()
	case out.Status >= 400 && json.Unmarshal(out.Body, &eb) == nil:
		return api.Errorf(api.ErrConflict, "%s", eb.Error)
	}
	return nil
}

// logUndo logs one step of a revert (it has no caller to answer).
func (s *Server) logUndo(what, name string, err error) {
	if err != nil {
		s.log.Error("cluster: undoing a cold move: "+what+" failed", "name", name, "err", err)
	}
}
