package domain

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/engine/fake"
)

// vncSpec is a small domain with a VNC display and password pw.
func (h *fakeHost) vncSpec(name, pw string) api.DomainSpec {
	s := h.spec(name, "", api.ActionRestart, "")
	s.VNC, s.VNCPassword = true, pw
	return s
}

// greet reads the first line of name's VNC server through the manager.
func greet(t *testing.T, m *Manager, name string) {
	t.Helper()
	c, err := m.VNC(context.Background(), name)
	if err != nil {
		t.Fatalf("VNC %s: %v", name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 12)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "RFB 003.008\n" {
		t.Fatalf("VNC %s greeting %q, %v", name, b, err)
	}
}

// A domain with vnc = 1: QEMU is started with a display on its run dir's
// socket, the password is set before the guest's first instruction (and
// again for a restarted incarnation), the manager connects to it; the
// API's views never show the password, the store keeps it.
func TestFakeVNCDisplay(t *testing.T) {
	h := newFakeHost(t, nil)
	v := h.create(h.vncSpec("g1", "s3cret"))
	if v.Spec.VNCPassword != api.HiddenPassword || h.get("g1").Spec.VNCPassword != api.HiddenPassword {
		t.Fatalf("a view shows the VNC password: %q", v.Spec.VNCPassword)
	}
	if rec, _ := h.record("g1"); rec.Spec.VNCPassword != "s3cret" {
		t.Fatalf("the record lost the password: %q", rec.Spec.VNCPassword)
	}
	checkVM := func() {
		t.Helper()
		vm := h.vm("g1")
		if ls := vm.Spec(); !ls.VNC || !ls.VNCPassword {
			t.Fatalf("launch spec VNC %v password %v", ls.VNC, ls.VNCPassword)
		}
		if pw, at := vm.VNCPassword(); pw != "s3cret" || at != engine.RunPrelaunch {
			t.Fatalf("password %q set while %s; want it set before the guest runs", pw, at)
		}
		greet(t, h.m, "g1")
	}
	checkVM()
	h.end("g1", (*fake.Instance).GuestReboot) // on_reboot restart: a new QEMU
	h.running("g1", 2)
	checkVM()

	// No password: the display is there, none is set.
	h.create(h.vncSpec("open", ""))
	if pw, _ := h.vm("open").VNCPassword(); pw != "" || h.vm("open").Spec().VNCPassword {
		t.Fatalf("a password was set for a display without one: %q", pw)
	}
	greet(t, h.m, "open")

	sock := h.vm("g1").VNCPath()
	if err := h.m.Destroy(context.Background(), "g1"); err != nil {
		t.Fatal(err)
	}
	h.gone("g1")
	if _, err := os.Stat(sock); err == nil {
		t.Fatalf("the VNC socket %s is left after destroy", sock)
	}
}

// Refusals: each says why and what to do; nothing is connected.
func TestFakeVNCRefused(t *testing.T) {
	h := newFakeHost(t, nil)
	h.create(h.spec("plain", "", "", ""))
	stopped := h.vncSpec("stopped", "")
	if _, err := h.m.Define(context.Background(), stopped, ""); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		class      error
	}{
		{"plain", "has no VNC display: add vnc = 1", api.ErrConflict},
		{"stopped", "is not running", api.ErrConflict},
		{"nobody", "no domain named", api.ErrNotFound},
	} {
		c, err := h.m.VNC(context.Background(), tc.name)
		if err == nil {
			c.Close()
		}
		if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("VNC %s: %v, want %v saying %q", tc.name, err, tc.class, tc.want)
		}
	}
}

// The placeholder a view shows in place of the password: given back in
// an update it keeps the password; anywhere else it is refused.
func TestFakeVNCHiddenPassword(t *testing.T) {
	h := newFakeHost(t, nil)
	ctx := context.Background()
	if _, err := h.m.Define(ctx, h.vncSpec("d1", "s3cret"), ""); err != nil {
		t.Fatal(err)
	}
	def, err := h.m.Definition("d1")
	if err != nil || def.Spec.VNCPassword != api.HiddenPassword {
		t.Fatalf("definition shows %q (%v)", def.Spec.VNCPassword, err)
	}
	edited := def.Spec
	edited.MemoryMiB, edited.MaxMemMiB = 96, 96
	if _, err := h.m.UpdateDefinition(ctx, "d1", edited); err != nil {
		t.Fatalf("an update giving the placeholder back: %v", err)
	}
	if h.m.doms["d1"].def.Spec.VNCPassword != "s3cret" || h.m.doms["d1"].def.Spec.MemoryMiB != 96 {
		t.Fatalf("after the update: %+v", h.m.doms["d1"].def.Spec)
	}
	for _, tc := range []struct {
		what string
		do   func() error
		want string
	}{
		{"create with the placeholder", func() error {
			_, err := h.m.Create(ctx, api.CreateRequest{Spec: h.vncSpec("c1", api.HiddenPassword)})
			return err
		}, "is the placeholder"},
		{"update of a definition without a password", func() error {
			if _, err := h.m.Define(ctx, h.vncSpec("d2", ""), ""); err != nil {
				return err
			}
			_, err := h.m.UpdateDefinition(ctx, "d2", h.vncSpec("d2", api.HiddenPassword))
			return err
		}, "has none: write the password itself"},
		{"a password over 8 characters", func() error {
			_, err := h.m.Create(ctx, api.CreateRequest{Spec: h.vncSpec("c2", "123456789")})
			return err
		}, "uses only the first 8"},
		{"a password without a display", func() error {
			s := h.spec("c3", "", "", "")
			s.VNCPassword = "pw"
			_, err := h.m.Create(ctx, api.CreateRequest{Spec: s})
			return err
		}, "vnc is off"},
	} {
		if err := tc.do(); !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want invalid saying %q", tc.what, err, tc.want)
		}
	}
	for _, n := range []string{"c1", "c2", "c3"} {
		if _, err := h.m.Get(n); err == nil || h.eng.Find(n) != nil {
			t.Errorf("a refused create left %s", n)
		}
	}
}
