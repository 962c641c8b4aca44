// Package audit keeps the record of every call that changed, or tried to
// change, something: an append-only log in the store. Each record has its
// own key, audit/<seq> (zero-padded, so keys sort as numbers), written
// once and never rewritten; the oldest is deleted, in the same
// transaction, once more than the retention are kept.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store"
)

const (
	prefix = "audit/"
	// seqKey holds the last sequence number written (outside prefix, so
	// listing records never meets it).
	seqKey = "audit-seq"
	digits = 16
	// DefaultKeep is how many records are kept: the oldest go first.
	DefaultKeep = 100_000
	// MaxLimit is the most records one read returns.
	MaxLimit = 10_000
)

// Log is the audit log of one store.
type Log struct {
	st   store.Store
	keep uint64
	now  func() time.Time

	mu   sync.Mutex
	last uint64 // the last sequence number written
}

// Open opens the log in st keeping the last keep records (0: DefaultKeep).
func Open(ctx context.Context, st store.Store, keep int) (*Log, error) {
	if keep <= 0 {
		keep = DefaultKeep
	}
	l := &Log{st: st, keep: uint64(keep), now: time.Now}
	b, err := st.Get(ctx, seqKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		if l.last, err = strconv.ParseUint(string(b), 10, 64); err != nil {
			return nil, fmt.Errorf("audit: the sequence number %q is damaged: %v", b, err)
		}
	}
	return l, nil
}

func key(seq uint64) string { return fmt.Sprintf("%s%0*d", prefix, digits, seq) }

// Append records rec under the next sequence number (its Seq and, when
// unset, its Time are filled in) and drops the oldest record beyond the
// retention, in one transaction.
func (l *Log) Append(ctx context.Context, rec api.AuditRecord) (api.AuditRecord, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec.Seq = l.last + 1
	if rec.Time.IsZero() {
		rec.Time = l.now().UTC()
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return rec, err
	}
	err = l.st.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Get(key(rec.Seq)); err == nil {
			return fmt.Errorf("audit: record %d exists; records are never rewritten", rec.Seq)
		}
		if err := tx.Put(key(rec.Seq), b); err != nil {
			return err
		}
		if rec.Seq > l.keep {
			if err := tx.Delete(key(rec.Seq - l.keep)); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return tx.Put(seqKey, []byte(strconv.FormatUint(rec.Seq, 10)))
	})
	if err != nil {
		return rec, err
	}
	l.last = rec.Seq
	return rec, nil
}

// Last is the newest sequence number written (0: none yet).
func (l *Log) Last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// Since returns up to limit records after seq since, oldest first.
func (l *Log) Since(ctx context.Context, since uint64, limit int) ([]api.AuditRecord, error) {
	if limit <= 0 || limit > MaxLimit {
		limit = MaxLimit
	}
	out := []api.AuditRecord{}
	err := l.after(ctx, since, func(kv store.KV) bool {
		var r api.AuditRecord
		if json.Unmarshal(kv.Value, &r) == nil && r.Seq > since {
			out = append(out, r)
		}
		return len(out) < limit
	})
	return out, err
}

// Tail returns the newest n records, oldest first.
func (l *Log) Tail(ctx context.Context, n int) ([]api.AuditRecord, error) {
	if n <= 0 || n > MaxLimit {
		n = MaxLimit
	}
	last := l.Last()
	since := uint64(0)
	if last > uint64(n) {
		since = last - uint64(n)
	}
	return l.Since(ctx, since, n)
}

// after calls fn on the records after seq since in order until it
// returns false. The store lists by prefix only, so the keys above since
// are covered by prefixes, smallest first: at each digit of since, from
// the last, the prefixes with a larger digit there; a prefix spanning
// more than 1000 keys is split, so a read costs about what it returns.
func (l *Log) after(ctx context.Context, since uint64, fn func(store.KV) bool) error {
	last := l.Last()
	if last > l.keep && since < last-l.keep {
		since = last - l.keep // older records were dropped
	}
	k := key(since)[len(prefix):]
	for i := digits - 1; i >= 0; i-- {
		for d := k[i] + 1; d <= '9'; d++ {
			more, err := l.walk(ctx, k[:i]+string(d), last, fn)
			if err != nil || !more {
				return err
			}
		}
	}
	return nil
}

// walk lists the keys under prefix p (digits of a sequence number) in
// order, splitting it while it spans more than 1000 keys; it stops
// (false) at a prefix whose keys are all above last.
func (l *Log) walk(ctx context.Context, p string, last uint64, fn func(store.KV) bool) (bool, error) {
	if lo, _ := strconv.ParseUint(p+strings.Repeat("0", digits-len(p)), 10, 64); lo > last {
		return false, nil
	}
	if digits-len(p) > 3 { // spans 10^(digits-len(p)) keys
		for d := byte('0'); d <= '9'; d++ {
			if more, err := l.walk(ctx, p+string(d), last, fn); err != nil || !more {
				return more, err
			}
		}
		return true, nil
	}
	kvs, err := l.st.List(ctx, prefix+p)
	if err != nil {
		return false, err
	}
	for _, kv := range kvs {
		if !fn(kv) {
			return false, nil
		}
	}
	return true, nil
}
