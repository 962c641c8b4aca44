package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
)

// progressLine draws a long job's progress on stderr. On a terminal it
// is one line redrawn in place (\r, then clear to its end) and never
// wider than the terminal, so a redraw never adds a line; elsewhere
// (a log, a pipe) each update is a line of its own, at most one every
// nonTTYEvery.
type progressLine struct {
	w     io.Writer
	width func() int // the terminal's columns (0: not a terminal)
	now   func() time.Time
	// The first report is the baseline of the rate: the job may have
	// started long before (a wait on an --async operation).
	t0     time.Time
	done0  int64
	drawn  bool
	last   time.Time
	sample int64
}

const nonTTYEvery = 2 * time.Second

func newProgress(e *env) *progressLine {
	p := &progressLine{w: e.stderr, width: func() int { return 0 }, now: time.Now}
	if f, ok := e.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
		p.width = func() int {
			if w, _, err := term.GetSize(fd); err == nil && w > 0 {
				return w
			}
			return 80
		}
	}
	return p
}

// update draws done of total (total 0: unknown) with what is happening;
// rate and time left are added once they can be told.
func (p *progressLine) update(done, total int64, what string) {
	now := p.now()
	if p.t0.IsZero() {
		p.t0, p.done0 = now, done
	}
	cols := p.width()
	if cols == 0 && p.drawn && now.Sub(p.last) < nonTTYEvery {
		return
	}
	line := p.render(done, total, what, now)
	p.drawn, p.last = true, now
	if cols == 0 {
		fmt.Fprintln(p.w, line)
		return
	}
	// The last column is left free: a terminal that wraps on it would
	// move the cursor to the next line.
	if len(line) > cols-1 {
		line = line[:cols-1]
	}
	fmt.Fprint(p.w, "\r"+line+"\x1b[K")
}

// render is the line: a bar and percent when the total is known, what,
// the rate and the time left.
func (p *progressLine) render(done, total int64, what string, now time.Time) string {
	var b strings.Builder
	if total > 0 {
		pct := min(max(100*float64(done)/float64(total), 0), 100)
		n := int(pct / 5)
		fmt.Fprintf(&b, "[%s%s] %5.1f%% ", strings.Repeat("#", n), strings.Repeat(".", 20-n), pct)
	}
	b.WriteString(what)
	if el := now.Sub(p.t0).Seconds(); el >= 0.5 && done > p.done0 {
		rate := float64(done-p.done0) / el
		fmt.Fprintf(&b, ", %s/s", sizeText(int64(rate)))
		if total > done {
			left := time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second)
			fmt.Fprintf(&b, ", %s left", left)
		}
	}
	return b.String()
}

// end finishes the line (a terminal's cursor moves off it).
func (p *progressLine) end() {
	if p.drawn && p.width() > 0 {
		fmt.Fprintln(p.w)
	}
}

// sizeText is a byte count for people: 512 KiB, 37.5 MiB, 1.2 GiB.
func sizeText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// withBar is the context of a long call (save, restore, snapshot,
// dump-core) whose progress is drawn, and the func that ends the line.
func withBar(e *env, async *asyncOpt) (context.Context, func()) {
	bar, end := jobBar(e)
	return client.WithProgress(async.ctx(e), bar), end
}

// jobBar draws a long operation's progress; the returned func ends the
// line.
func jobBar(e *env) (func(api.JobProgress), func()) {
	p := newProgress(e)
	return func(jp api.JobProgress) {
		what := fmt.Sprintf("%s: %s", jp.Phase, sizeText(jp.Done))
		if jp.Total > 0 {
			what += " of " + sizeText(jp.Total)
		}
		p.update(jp.Done, jp.Total, what)
	}, p.end
}
