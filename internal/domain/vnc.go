package domain

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
)

// A domain with vnc = 1 has a display: QEMU's VNC server on a unix socket
// in its run dir (never a TCP port on the host), which only the daemon
// reaches. The daemon proxies it to API clients (GET /1.0/domains/NAME/
// vnc); its password, when the spec has one, is set over QMP before the
// guest runs.

// vncDialTimeout bounds the connection to QEMU's VNC socket.
const vncDialTimeout = 5 * time.Second

// VNC connects to a running domain's VNC server: the RFB byte stream, for
// the caller to relay.
func (m *Manager) VNC(ctx context.Context, name string) (net.Conn, error) {
	d, err := m.get(name)
	if err != nil {
		return nil, err
	}
	v := m.current(d)
	if !v.Spec.VNC {
		return nil, api.Errorf(api.ErrConflict, "%s has no VNC display: add vnc = 1 to its domain file (vncpasswd = \"...\" for a password), then create it again, or `ringfence config update %s FILE` and restart it", name, name)
	}
	li := d.live.Load()
	if li == nil {
		return nil, api.Errorf(api.ErrConflict, "%s is not running (%s): its display exists only while it runs; `ringfence start %s`", name, v.State, name)
	}
	vd, ok := li.Instance.(engine.VNCDisplay)
	if !ok {
		return nil, api.Errorf(api.ErrUnavailable, "this host's engine serves no VNC display")
	}
	dctx, cancel := context.WithTimeout(ctx, vncDialTimeout)
	defer cancel()
	var dl net.Dialer
	c, err := dl.DialContext(dctx, "unix", vd.VNCPath())
	if err != nil {
		return nil, fmt.Errorf("reaching %s's VNC server: %w (see `ringfence log %s --qemu`)", name, err, name)
	}
	return c, nil
}

// setVNCPassword gives a new incarnation's VNC server its password (a
// spec with none has password=off: the route's token is the protection).
func setVNCPassword(ctx context.Context, inst engine.Instance, spec api.DomainSpec) error {
	if !spec.VNC || spec.VNCPassword == "" {
		return nil
	}
	vd, ok := inst.(engine.VNCDisplay)
	if !ok {
		return api.Errorf(api.ErrUnavailable, "this host's engine serves no VNC display: remove vnc = 1")
	}
	if err := vd.SetVNCPassword(ctx, spec.VNCPassword); err != nil {
		return fmt.Errorf("setting the VNC password: %w", err)
	}
	return nil
}

// keepHiddenPassword replaces the placeholder the API shows for a set
// VNC password or root password hash (api.HiddenPassword, as `config
// export` writes it) with the one of the definition it updates: a file
// exported, edited and given back keeps its passwords.
func (m *Manager) keepHiddenPassword(name string, spec *api.DomainSpec) error {
	vnc := spec.VNCPassword == api.HiddenPassword
	hash := spec.Provision != nil && spec.Provision.PasswordHash == api.HiddenPassword
	if !vnc && !hash {
		return nil
	}
	d, err := m.get(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.def == nil {
		return nil // not defined: the update says so
	}
	cur := d.def.Spec
	if d.def.Pending != nil {
		cur = *d.def.Pending
	}
	if vnc {
		if cur.VNCPassword == "" {
			return api.Errorf(api.ErrInvalid, "vncpasswd: %q stands for the password set now, but %s has none: write the password itself", api.HiddenPassword, name)
		}
		spec.VNCPassword = cur.VNCPassword
	}
	if hash {
		if cur.Provision == nil || cur.Provision.PasswordHash == "" {
			return api.Errorf(api.ErrInvalid, "root_password_hash: %q stands for the hash set now, but %s has none: write the hash itself", api.HiddenPassword, name)
		}
		p := *spec.Provision
		p.PasswordHash = cur.Provision.PasswordHash
		spec.Provision = &p
	}
	return nil
}
