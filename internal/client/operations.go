package client

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// detachKey carries where a detached call puts the operation it started.
type detachKey struct{}

// Detach returns a context under which a call that starts an operation
// returns at once, without a result, having stored the operation in op
// (op.ID stays empty when the call started none): `--async`.
func Detach(ctx context.Context) (context.Context, *api.Operation) {
	op := new(api.Operation)
	return context.WithValue(ctx, detachKey{}, op), op
}

// progressKey carries a progress function for calls that take none
// (save, restore, snapshot create): WithProgress.
type progressKey struct{}

// WithProgress returns ctx under which a call that starts an operation
// reports the operation's progress to fn.
func WithProgress(ctx context.Context, fn func(api.JobProgress)) context.Context {
	if fn == nil {
		return ctx
	}
	return context.WithValue(ctx, progressKey{}, fn)
}

// watchKey carries what a caller wants to hear of each operation it
// follows (Watch).
type watchKey struct{}

// Watch returns a context under which a call that starts an operation
// calls fn with it before waiting for it (the CLI notes the id, so
// Ctrl-C can cancel it).
func Watch(ctx context.Context, fn func(api.Operation)) context.Context {
	return context.WithValue(ctx, watchKey{}, fn)
}

// progressEvery is how often an operation whose progress is shown is
// asked for (a wait with this timeout: at once when it ends).
const progressEvery = 200 * time.Millisecond

// follow waits for op to end, calling progress (when set) as it changes,
// and decodes its result into out or returns its error.
func (c *Client) follow(ctx context.Context, op api.Operation, progress func(api.JobProgress), out any) error {
	if d, ok := ctx.Value(detachKey{}).(*api.Operation); ok {
		*d = op
		return nil
	}
	if progress == nil {
		progress, _ = ctx.Value(progressKey{}).(func(api.JobProgress))
	}
	if fn, ok := ctx.Value(watchKey{}).(func(api.Operation)); ok {
		fn(op)
	}
	timeout := 30 * time.Second
	if progress != nil {
		timeout = progressEvery
	}
	var last api.JobProgress
	for !op.Done() {
		var err error
		if op, err = c.WaitOperation(ctx, op.ID, timeout); err != nil {
			return fmt.Errorf("waiting for operation %s: %w", op.ID, err)
		}
		if p := op.Progress; progress != nil && p != nil && !op.Done() && *p != last {
			last = *p
			progress(*p)
		}
	}
	if err := op.Err(); err != nil {
		return err
	}
	if out != nil && len(op.Result) > 0 {
		return json.Unmarshal(op.Result, out)
	}
	return nil
}

// Operations lists the operations the caller may see.
func (c *Client) Operations(ctx context.Context) ([]api.Operation, error) {
	var out []api.Operation
	return out, c.do(ctx, "GET", "/operations", nil, &out)
}

// Operation returns one operation as it is now.
func (c *Client) Operation(ctx context.Context, id string) (api.Operation, error) {
	var out api.Operation
	return out, c.do(ctx, "GET", "/operations/"+seg(id), nil, &out)
}

// WaitOperation returns the operation once it has ended, or after
// timeout with it still running.
func (c *Client) WaitOperation(ctx context.Context, id string, timeout time.Duration) (api.Operation, error) {
	out := api.Operation{ID: id}
	q := strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64)
	return out, c.do(ctx, "GET", "/operations/"+seg(id)+"/wait?timeout="+q, nil, &out)
}

// CancelOperation asks a running operation to stop; it ends as
// cancelled once its work is undone (WaitOperation).
func (c *Client) CancelOperation(ctx context.Context, id string) (api.Operation, error) {
	var out api.Operation
	return out, c.do(ctx, "DELETE", "/operations/"+seg(id), nil, &out)
}
