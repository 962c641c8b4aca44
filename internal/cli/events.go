package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/ringfence/ringfence/internal/api"
)

// errEnough ends the stream once --count events were printed.
var errEnough = errors.New("enough events")

// runEvents prints the event stream: from now, or what came after
// --since SEQ (the retained window; a "resync" line says older ones are
// gone). A reader that falls behind resumes where it was, missing nothing.
func runEvents(e *env, args []string) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	since := fs.Int64("since", -1, "replay the events after this seq first")
	asJSON := fs.Bool("json", false, "print the raw events, one JSON object a line")
	count := fs.Int("count", 0, "exit after this many events (0: follow until interrupted)")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	c, stop := signal.NotifyContext(ctx(), os.Interrupt)
	defer stop()
	n := 0
	if !*asJSON {
		fmt.Fprintf(e.stdout, "%-8s %-8s %-14s %-16s %-10s %s\n", "SEQ", "TIME", "EVENT", "DOMAIN", "BY", "DETAIL")
	}
	err := e.client().Follow(c, *since, func(ev api.Event) error {
		printEvent(e, ev, *asJSON)
		if n++; *count > 0 && n >= *count {
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) || c.Err() != nil {
		return nil
	}
	return err
}

// printEvent prints one event: its JSON, or a line within 80 columns.
func printEvent(e *env, ev api.Event, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(ev)
		fmt.Fprintf(e.stdout, "%s\n", b)
		return
	}
	what := ev.Action
	if ev.Type != api.EventLifecycle {
		what = ev.Type
		if ev.Action != "" {
			what += ":" + ev.Action
		}
	}
	by := "-"
	if ev.Actor != nil {
		by = ev.Actor.Name
	}
	line := fmt.Sprintf("%-8d %s %-14s %-16s %-10s %s", ev.Seq, ev.Time.Local().Format("15:04:05"),
		cut(what, 14), cut(ev.Domain, 16), cut(by, 10), ev.Detail)
	fmt.Fprintln(e.stdout, cut(line, 80))
}

// cut shortens s to n runes, marking the cut.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
