package daemon

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ringfence/ringfence/internal/events"
	"github.com/ringfence/ringfence/internal/store"
)

// What outlives a restart of the daemon beyond the domains: the event
// stream's sequence (so seqs never repeat and an old since gets a
// resync), and the operations' records (operations.Registry.Open).

// eventSeqKey holds the event seq a daemon may have reached: the exact
// head once it stopped cleanly, else the block it had reserved.
const eventSeqKey = "events-seq"

// openBus makes the event bus, continuing the previous daemon's seqs;
// the head is written back when the daemon ends (later).
func (b *startup) openBus() (*events.Bus, error) {
	start := uint64(0)
	v, err := b.st.Get(context.Background(), eventSeqKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		if start, err = strconv.ParseUint(string(v), 10, 64); err != nil {
			return nil, fmt.Errorf("the store's event sequence %q is damaged: %v", v, err)
		}
	}
	st, log := b.st, b.log
	put := func(seq uint64) {
		if err := store.Put(context.Background(), st, eventSeqKey, []byte(strconv.FormatUint(seq, 10))); err != nil {
			log.Error("recording the event sequence", "seq", seq, "err", err)
		}
	}
	bus := events.New(events.Config{Start: start, Reserve: put})
	b.later(func() { put(bus.Checkpoint()) })
	return bus, nil
}

// openOperations makes the registry of operations, which run as long as
// the daemon (ctx), with the previous daemon's records.
func (b *startup) openOperations() error {
	b.s.ops.OnError = func(err error) { b.log.Error("operation records", "err", err) }
	return b.s.ops.Open(context.Background(), b.st, time.Now())
}
