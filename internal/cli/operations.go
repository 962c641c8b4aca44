package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
)

// asyncOpt is a long verb's --async: the call returns once the daemon
// has started the operation, whose id is printed.
type asyncOpt struct {
	on *bool
	op *api.Operation
}

func asyncFlag(fs *flag.FlagSet) *asyncOpt {
	return &asyncOpt{on: fs.Bool("async", false, "start the operation, print its id and return (see `ringfence operation`)")}
}

// ctx is the context for the verb's call: waited for (Ctrl-C cancels
// it, twice detaches: env.waitCtx), or with --async not.
func (a *asyncOpt) ctx(e *env) context.Context {
	if !*a.on {
		return e.waitCtx()
	}
	c, op := client.Detach(ctx())
	a.op = op
	return c
}

// started prints the operation's id when the call started one with
// --async: the verb is then done.
func (a *asyncOpt) started(e *env) bool {
	if a.op == nil || a.op.ID == "" {
		return false
	}
	fmt.Fprintln(e.stdout, a.op.ID)
	return true
}

const opsUsage = "expected list, show ID, wait ID or cancel ID"

// runOperation: operation list | show ID | wait ID [--timeout S] |
// cancel ID [-w]; an ID may be shortened to a unique prefix.
func runOperation(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{opsUsage}
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("operation "+sub, flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	c := e.client()
	if sub == "list" {
		if _, err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		ops, err := c.Operations(ctx())
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, ops)
		}
		printOps(e.stdout, ops, time.Now())
		return nil
	}
	timeout := fs.Duration("timeout", 0, "wait: give up after this long (0: until it ends)")
	wait := fs.Bool("w", false, "cancel: wait until it has ended (its work undone)")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	id, err := resolveOp(c, pos[0])
	if err != nil {
		return err
	}
	var op api.Operation
	switch sub {
	case "show":
		op, err = c.Operation(ctx(), id)
	case "wait":
		op, err = waitOp(c, id, *timeout)
	case "cancel":
		if op, err = c.CancelOperation(ctx(), id); err == nil && *wait {
			op, err = waitOp(c, id, 0)
		}
	default:
		return usageError{"unknown `operation " + sub + "`: " + opsUsage}
	}
	if err != nil {
		return err
	}
	if *asJSON {
		printJSON(e.stdout, op)
	} else {
		printOp(e.stdout, op)
	}
	if sub == "wait" && op.Done() {
		return op.Err()
	}
	return nil
}

// waitOp waits for an operation to end (at most timeout, 0: no limit).
func waitOp(c *client.Client, id string, timeout time.Duration) (api.Operation, error) {
	deadline := time.Now().Add(timeout)
	for {
		step := 30 * time.Second
		if timeout > 0 {
			step = min(step, time.Until(deadline))
		}
		op, err := c.WaitOperation(ctx(), id, max(step, 0))
		if err != nil || op.Done() || timeout > 0 && time.Now().After(deadline) {
			return op, err
		}
	}
}

// resolveOp turns a unique prefix of an operation's id (as `operation
// list` shows) into the id.
func resolveOp(c *client.Client, prefix string) (string, error) {
	if len(prefix) >= 32 {
		return prefix, nil
	}
	ops, err := c.Operations(ctx())
	if err != nil {
		return "", err
	}
	var found []string
	for _, op := range ops {
		if strings.HasPrefix(op.ID, prefix) {
			found = append(found, op.ID)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1 && prefix != "":
		return "", api.Errorf(api.ErrInvalid, "%q names %d operations; give more of the id", prefix, len(found))
	}
	return "", api.Errorf(api.ErrNotFound, "no operation %q", prefix)
}

// printOps is `operation list`: one line each, within 80 columns (the
// id shortened to 12 digits, which `show`, `wait` and `cancel` take).
func printOps(w io.Writer, ops []api.Operation, now time.Time) {
	fmt.Fprintf(w, "%-12s %-15s %-14s %-9s %-8s %-8s %s\n", "ID", "KIND", "DOMAIN", "STATUS", "PROGRESS", "OWNER", "AGE")
	for _, op := range ops {
		fmt.Fprintf(w, "%-12s %-15s %-14s %-9s %-8s %-8s %s\n", op.ID[:min(12, len(op.ID))], cut(op.Kind, 15), cut(op.Domain, 14),
			op.Status, progressText(op.Progress), cut(op.Owner, 8), age(now.Sub(op.Created)))
	}
}

// printOp is one operation in full.
func printOp(w io.Writer, op api.Operation) {
	fmt.Fprintf(w, "%s %s", op.ID, op.Kind)
	if op.Domain != "" {
		fmt.Fprintf(w, " of %s", op.Domain)
	}
	fmt.Fprintf(w, ": %s", op.Status)
	if p := op.Progress; p != nil && !op.Done() {
		fmt.Fprintf(w, " (%s %s)", p.Phase, progressText(p))
	}
	if op.Error != "" {
		fmt.Fprintf(w, ": %s", op.Error)
	}
	fmt.Fprintf(w, "\n  started %s by %s, updated %s\n", op.Created.Local().Format("15:04:05"), op.Owner, op.Updated.Local().Format("15:04:05"))
	if len(op.Result) > 0 && string(op.Result) != "null" {
		fmt.Fprintf(w, "  result: %s\n", op.Result)
	}
}

func progressText(p *api.JobProgress) string {
	switch {
	case p == nil:
		return "-"
	case p.Total > 0:
		return fmt.Sprintf("%.1f%%", 100*float64(p.Done)/float64(p.Total))
	}
	return fmt.Sprintf("%dM", p.Done>>20)
}

// age is a short duration: 42s, 5m, 3h.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return fmt.Sprintf("%dh", int(d.Hours()))
}
