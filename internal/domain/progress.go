package domain

import (
	"context"
	"io"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
)

// A long verb (save, restore, snapshot --memory) reports its progress to
// the function its context carries: the daemon runs them as operations
// whose progress the client draws. The context carries it because these
// verbs also run inside others (a host shutdown saves, a snapshot revert
// restores) that have no one to report to.
type progressKey struct{}

// WithProgress returns ctx carrying fn for the verbs run under it.
func WithProgress(ctx context.Context, fn func(api.JobProgress)) context.Context {
	if fn == nil {
		return ctx
	}
	return context.WithValue(ctx, progressKey{}, fn)
}

// progressOf is ctx's progress function (never nil).
func progressOf(ctx context.Context) func(api.JobProgress) {
	if fn, ok := ctx.Value(progressKey{}).(func(api.JobProgress)); ok {
		return fn
	}
	return func(api.JobProgress) {}
}

// streamProgress turns an outgoing stream's figures into job progress.
func streamProgress(ctx context.Context, phase string) func(engine.MigrationStats) {
	report := progressOf(ctx)
	return func(st engine.MigrationStats) {
		report(api.JobProgress{Phase: phase, Done: st.TransferredB, Total: st.TransferredB + st.RemainingB})
	}
}

// countingReader reports bytes read of total as a phase's progress.
type countingReader struct {
	r      io.Reader
	done   int64
	total  int64
	phase  string
	report func(api.JobProgress)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.done += int64(n)
	c.report(api.JobProgress{Phase: c.phase, Done: c.done, Total: c.total})
	return n, err
}
