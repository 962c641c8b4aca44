package operations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store"
)

// Operations are kept in the store as records (operations/<id>): written
// when one starts and when it ends (its progress is not: it changes many
// times a second and is worthless after a restart), deleted when pruned.
// So a daemon that restarts still shows what finished, with its result,
// and what was running when it died as failed, "interrupted".

const keyPrefix = "operations/"

// Open loads the records of st into the registry and keeps it there from
// now on. A record still running is of an operation the previous daemon
// died or stopped during: it is failed as interrupted at now (its work
// is not resumed; what it left is for the layer below to recover, as at
// any restart).
func (r *Registry) Open(ctx context.Context, st store.Store, now time.Time) error {
	kvs, err := st.List(ctx, keyPrefix)
	if err != nil {
		return fmt.Errorf("reading the operations' records: %w", err)
	}
	var interrupted []api.Operation
	r.mu.Lock()
	r.st = st
	for _, kv := range kvs {
		var v api.Operation
		if json.Unmarshal(kv.Value, &v) != nil || v.ID == "" {
			continue // a damaged record: not worth a failed start
		}
		if !v.Done() {
			v.Status, v.Class, v.Progress, v.Updated = api.OpFailure, "unavailable", nil, now.UTC()
			v.Error = "interrupted: the daemon restarted at " + now.UTC().Format(time.RFC3339)
			interrupted = append(interrupted, v)
		}
		o := &op{view: v, cancel: func() {}, done: make(chan struct{})}
		close(o.done)
		r.ops[v.ID] = o
	}
	dropped := r.pruneLocked(now)
	r.mu.Unlock()
	for _, v := range interrupted {
		r.persist(v)
	}
	r.unpersist(dropped)
	return nil
}

// persist writes an operation's record (when the registry has a store).
func (r *Registry) persist(v api.Operation) {
	if r.st == nil {
		return
	}
	v.Progress = nil
	b, err := json.Marshal(v)
	if err == nil {
		err = store.Put(context.Background(), r.st, keyPrefix+v.ID, b)
	}
	if err != nil && r.OnError != nil {
		r.OnError(fmt.Errorf("recording operation %s: %w", v.ID, err))
	}
}

// unpersist deletes the records of pruned operations.
func (r *Registry) unpersist(ids []string) {
	if r.st == nil || len(ids) == 0 {
		return
	}
	err := r.st.Update(context.Background(), func(tx store.Tx) error {
		for _, id := range ids {
			if err := tx.Delete(keyPrefix + id); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil && r.OnError != nil {
		r.OnError(fmt.Errorf("deleting %d operation records: %w", len(ids), err))
	}
}
