package domain

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

// TestFakeRename: a running domain keeps its VM under the new name, with
// everything keyed by the name moved (record, ledger, run dir, logs), and
// a restarted daemon re-attaches it there; a stopped defined domain moves
// its definition; a refused or failed rename changes nothing.
func TestFakeRename(t *testing.T) {
	ctx := context.Background()
	t.Run("running", func(t *testing.T) {
		h := newFakeHost(t, nil)
		before := h.create(h.spec("vm", "", "", ""))
		if err := h.m.Rename(ctx, "vm", "vm2"); err != nil {
			t.Fatal(err)
		}
		h.renamed("vm", "vm2", before.PID)
		h.daemonRestart()
		if v := h.running("vm2", 1); v.PID != before.PID {
			t.Fatalf("re-attached as pid %d, was %d", v.PID, before.PID)
		}
		if _, err := h.m.Get("vm"); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("the old name came back after a restart: %v", err)
		}
	})
	t.Run("defined-stopped", func(t *testing.T) {
		h := newFakeHost(t, nil)
		if _, err := h.m.Define(ctx, h.spec("vm", "", "", ""), ""); err != nil {
			t.Fatal(err)
		}
		if err := h.m.Rename(ctx, "vm", "vm2"); err != nil {
			t.Fatal(err)
		}
		if _, err := h.m.Definition("vm2"); err != nil {
			t.Fatalf("definition under the new name: %v", err)
		}
		if _, err := h.st.Get(ctx, keyDefinitions+"vm"); err == nil {
			t.Fatal("the old definition is kept")
		}
		h.daemonRestart()
		if _, err := h.m.Start(ctx, "vm2", false); err != nil {
			t.Fatalf("start after rename: %v", err)
		}
	})
	for _, tc := range []struct {
		name, to, want string
		class          error
		inject         func(h *fakeHost)
	}{
		{"invalid", "bad/name", "'/' is not allowed", api.ErrInvalid, nil},
		{"taken", "other", "a domain named other exists", api.ErrConflict, nil},
		{"same", "vm", "already called vm", api.ErrInvalid, nil},
		{"store-fails", "vm2", "boom", nil, func(h *fakeHost) {
			h.st.FailUpdates(func(map[string][]byte) error { return errBoom })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t, nil)
			before := h.create(h.spec("vm", "", "", ""))
			if _, err := h.m.Define(ctx, h.spec("other", "", "", ""), ""); err != nil {
				t.Fatal(err)
			}
			if tc.inject != nil {
				tc.inject(h)
			}
			err := h.m.Rename(ctx, "vm", tc.to)
			if err == nil || !strings.Contains(err.Error(), tc.want) || tc.class != nil && !errors.Is(err, tc.class) {
				t.Fatalf("rename to %q: %v, want %q", tc.to, err, tc.want)
			}
			h.heal()
			h.renamed("vm2", "vm", before.PID) // nothing moved: still vm
		})
	}
}

// renamed checks that name runs as pid under to and nothing of from is
// left: the registry, the stored record, the ledger, the run dir.
func (h *fakeHost) renamed(from, to string, pid int) {
	h.t.Helper()
	if v := h.running(to, 1); v.PID != pid || v.Spec.Name != to {
		h.t.Fatalf("%s: pid %d name %q, want pid %d", to, v.PID, v.Spec.Name, pid)
	}
	if rec, ok := h.record(to); !ok || rec.Spec.Name != to {
		h.t.Fatalf("no record under %s", to)
	}
	if !h.held(to) || h.eng.Find(to) == nil {
		h.t.Fatalf("%s: ledger %v, VM %v", to, h.held(to), h.eng.Find(to) != nil)
	}
	if _, err := os.Stat(h.m.runDir(to)); err != nil {
		h.t.Fatalf("%s: run dir: %v", to, err)
	}
	if _, err := h.m.Get(from); !errors.Is(err, api.ErrNotFound) {
		h.t.Fatalf("%s still answers: %v", from, err)
	}
	if _, ok := h.record(from); ok || h.held(from) {
		h.t.Fatalf("%s: a record or ledger entry is left", from)
	}
	if _, err := os.Stat(h.m.runDir(from)); err == nil {
		h.t.Fatalf("%s: the run dir is left", from)
	}
}
