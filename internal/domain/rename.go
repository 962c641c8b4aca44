package domain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/revert"
	"github.com/ringfence/ringfence/internal/spec"
	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/usage"
)

// renamer renames one domain (xl rename), running or not: a running one
// keeps running in the same QEMU. Everything keyed by the name moves, in
// order, each step undone if a later one fails: the run dir (its QEMU's
// sockets move with it), the logs, the cgroups, the ledger entry, then
// the store in one transaction (record, definition, a pending restore),
// which is the point of no return; the registry last.
type renamer struct {
	m        *Manager
	d        *dom
	old, new string
	r        *revert.Reverter
}

// Rename gives a domain a new name. The new name must follow the name
// rule and be free (no domain or definition has it); a domain being
// migrated cannot be renamed.
func (m *Manager) Rename(ctx context.Context, name, newName string) (err error) {
	if err := spec.ValidName(newName); err != nil {
		return api.Errorf(api.ErrInvalid, "rename to %q: %v", newName, err)
	}
	d, err := m.get(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.rec.Spec.Name
	defer func() { m.after(subject{ctx: ctx, name: newName, tenant: d.tenant}, api.EvRenamed, "from "+old, &err) }()
	if d.migrating {
		return api.Errorf(api.ErrConflict, "%s is being migrated: rename it once the migration has ended", old)
	}
	if old == newName {
		return api.Errorf(api.ErrInvalid, "%s is already called %s", old, newName)
	}
	// m.mu is held throughout: no create or define can take the new name
	// meanwhile (lock order: a domain's mu, then the manager's).
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, taken := m.doms[newName]; taken {
		return api.Errorf(api.ErrConflict, "a domain named %s exists: pick another name (ringfence list --all)", newName)
	}
	rn := &renamer{m: m, d: d, old: old, new: newName, r: revert.New()}
	defer rn.r.Fail()
	for _, step := range []func() error{rn.runDir, rn.logs, rn.cgroups, rn.ledger, rn.store} {
		if err := step(); err != nil {
			return err
		}
	}
	rn.r.Success()
	rn.commit()
	return nil
}

// moveDir renames a directory of the domain's (a missing one is fine),
// undone on failure.
func (rn *renamer) moveDir(from, to, what string) error {
	if _, err := os.Lstat(from); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, err := os.Lstat(to); err == nil {
		return api.Errorf(api.ErrConflict, "renaming %s to %s: its %s %s exists (left by an earlier domain of that name?)", rn.old, rn.new, what, to)
	}
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("renaming %s to %s: moving its %s: %w", rn.old, rn.new, what, err)
	}
	rn.r.Add(func() { os.Rename(to, from) })
	return nil
}

func (rn *renamer) runDir() error {
	return rn.moveDir(rn.m.runDir(rn.old), rn.m.runDir(rn.new), "run dir")
}

// logs moves the domain's console and QEMU logs. The logs of an earlier
// domain that had the new name are kept aside, with the time in the name.
func (rn *renamer) logs() error {
	from, to := filepath.Join(rn.m.o.LogDir, rn.old), filepath.Join(rn.m.o.LogDir, rn.new)
	if _, err := os.Lstat(to); err == nil {
		aside := fmt.Sprintf("%s.before-rename-%d", to, time.Now().Unix())
		if err := os.Rename(to, aside); err != nil {
			return fmt.Errorf("renaming %s to %s: moving the old logs of %s aside: %w", rn.old, rn.new, rn.new, err)
		}
		rn.r.Add(func() { os.Rename(aside, to) })
	}
	return rn.moveDir(from, to, "log dir")
}

func (rn *renamer) cgroups() error {
	if rn.m.o.Cgroups == nil || rn.d.inst == nil {
		return nil
	}
	if err := rn.m.o.Cgroups.Rename(rn.old, rn.new); err != nil {
		return err
	}
	rn.r.Add(func() { rn.m.o.Cgroups.Rename(rn.new, rn.old) })
	return nil
}

func (rn *renamer) ledger() error {
	rn.m.o.Ledger.Rename(rn.old, rn.new)
	rn.r.Add(func() { rn.m.o.Ledger.Rename(rn.new, rn.old) })
	return nil
}

// store moves the record, the definition and a pending restore to the
// new name in one transaction.
func (rn *renamer) store() error {
	rec := rn.d.rec
	rec.Spec.Name = rn.new
	if rn.d.inst != nil {
		if rl, ok := rn.d.inst.(engine.Relocatable); ok {
			rl.Relocated(rn.m.runDir(rn.new), filepath.Join(rn.m.o.LogDir, rn.new, "qemu.log"))
			rn.r.Add(func() { rl.Relocated(rn.m.runDir(rn.old), filepath.Join(rn.m.o.LogDir, rn.old, "qemu.log")) })
		}
		rec.Engine = rn.d.inst.State()
	}
	rb, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	var db []byte
	if def := rn.d.def; def != nil {
		nd := *def
		nd.Spec.Name = rn.new
		if nd.Pending != nil {
			p := *nd.Pending
			p.Name = rn.new
			nd.Pending = &p
		}
		nd.Updated = time.Now().UTC()
		if db, err = json.Marshal(&nd); err != nil {
			return err
		}
	}
	// Its usage records so far close under the old name, the next opens
	// under the new one with the same totals.
	var uc *usage.Change
	if rn.m.o.Usage != nil {
		uc = rn.m.o.Usage.Rename(rn.old, rn.new)
	}
	err = rn.m.o.Store.Update(context.Background(), func(tx store.Tx) error {
		if err := writeUsage(uc)(tx); err != nil {
			return err
		}
		return rn.moveKeys(tx, rb, db)
	})
	uc.Done(err)
	if err != nil {
		return fmt.Errorf("renaming %s to %s in the store: %w", rn.old, rn.new, err)
	}
	return nil
}

func (rn *renamer) moveKeys(tx store.Tx, rb, db []byte) error {
	if _, err := tx.Get(keyDomains + rn.old); err == nil {
		if err := tx.Delete(keyDomains + rn.old); err != nil {
			return err
		}
		if err := tx.Put(keyDomains+rn.new, rb); err != nil {
			return err
		}
	}
	if db != nil {
		if err := tx.Delete(keyDefinitions + rn.old); err != nil {
			return err
		}
		if err := tx.Put(keyDefinitions+rn.new, db); err != nil {
			return err
		}
	}
	if v, err := tx.Get(keyRestore + rn.old); err == nil && v != nil {
		if err := tx.Delete(keyRestore + rn.old); err != nil {
			return err
		}
		return tx.Put(keyRestore+rn.new, v)
	}
	return nil
}

// commit renames the domain in memory once the store has the new name.
// Caller holds m.mu and the domain's mu.
func (rn *renamer) commit() {
	d, m := rn.d, rn.m
	d.rec.Spec.Name = rn.new
	if d.inst != nil {
		d.rec.Engine = d.inst.State()
	}
	if d.def != nil {
		d.def.Spec.Name = rn.new
		if d.def.Pending != nil {
			d.def.Pending.Name = rn.new
		}
	}
	if d.console != nil {
		d.console.moveLog(filepath.Join(m.o.LogDir, rn.new, "console.log"))
	}
	delete(m.doms, rn.old)
	m.doms[rn.new] = d
	if b, err := json.Marshal(d.rec); err == nil {
		m.saveRuntime(rn.new, b)
	}
	m.view(d)
}
