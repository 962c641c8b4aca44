package cli

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/ringfence/ringfence/internal/api"
)

// topColumns are xentop's, plus STEAL(%).
const topHeader = "      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) VCPUS STEAL(%) NETS NETTX(k) NETRX(k) VBDS   VBD_RD   VBD_WR"

// topRow is one domain's line; the name is cut to width (xentop's 10)
// unless width is wider (top -f: full names).
func topRow(d api.DomainStats, width int) string {
	name := d.Name
	if len(name) > width {
		name = name[:width]
	}
	return fmt.Sprintf("%*s %6s %10.0f %6.1f %10d %6.1f %10d %5d %8.1f %4d %8d %8d %4d %8d %8d",
		width, name, d.Flags, d.CPUSec, d.CPUPct, d.MemKiB, d.MemPct, d.MaxMemKiB, d.VCPUs, d.StealPct, d.Nets, d.NetTxKiB, d.NetRxKiB, d.VBDs, d.VBDRd, d.VBDWr)
}

// topSorts are the --sort keys, by full word.
var topSorts = map[string]func(a, b api.DomainStats) bool{
	"name":  func(a, b api.DomainStats) bool { return a.Name < b.Name },
	"cpu":   func(a, b api.DomainStats) bool { return a.CPUPct > b.CPUPct },
	"mem":   func(a, b api.DomainStats) bool { return a.MemKiB > b.MemKiB },
	"steal": func(a, b api.DomainStats) bool { return a.StealPct > b.StealPct },
	"net":   func(a, b api.DomainStats) bool { return a.NetTxKiB+a.NetRxKiB > b.NetTxKiB+b.NetRxKiB },
	"vbd":   func(a, b api.DomainStats) bool { return a.VBDRd+a.VBDWr > b.VBDRd+b.VBDWr },
}

// topKeys are the one-letter keys of live top, each a distinct sort key
// (net is t, as in NETTX: n is name).
var topKeys = map[byte]string{'n': "name", 'c': "cpu", 'm': "mem", 's': "steal", 't': "net", 'v': "vbd"}

const topKeyHelp = "sort: n name, c cpu, m mem, s steal, t net, v vbd; q quits"

// topView is how top draws: the sort key, whole names (-f), and at most
// rows domains (0: all) of at most cols columns (0: any).
type topView struct {
	sortBy     string
	full       bool
	rows, cols int
}

func renderTop(w io.Writer, s api.Stats, view topView) {
	running, blocked, paused, crashed, shutdown := 0, 0, 0, 0, 0
	for _, d := range s.Domains {
		switch {
		case strings.Contains(d.Flags, "r"):
			running++
		case strings.Contains(d.Flags, "b"):
			blocked++
		case strings.Contains(d.Flags, "p"):
			paused++
		case strings.Contains(d.Flags, "c"):
			crashed++
		case strings.Contains(d.Flags, "s"):
			shutdown++
		}
	}
	fmt.Fprintf(w, "ringfence top - %s\n", s.Time.Format("15:04:05"))
	fmt.Fprintf(w, "%d domains: %d running, %d blocked, %d paused, %d crashed, %d shutdown\n",
		len(s.Domains), running, blocked, paused, crashed, shutdown)
	fmt.Fprintf(w, "Mem: %dk total, %dk used, %dk free    CPUs: %d\n", s.MemTotalKiB, s.MemTotalKiB-s.MemFreeKiB, s.MemFreeKiB, s.CPUs)
	width := 10
	if view.full {
		for _, d := range s.Domains {
			width = max(width, len(d.Name))
		}
	}
	fmt.Fprintln(w, clip(strings.Repeat(" ", width-4)+topHeader[6:], view.cols))
	ds := append([]api.DomainStats(nil), s.Domains...)
	less := topSorts[view.sortBy]
	sort.SliceStable(ds, func(i, j int) bool { return less(ds[i], ds[j]) })
	for i, d := range ds {
		if view.rows > 0 && i == view.rows-1 && len(ds) > view.rows {
			fmt.Fprintf(w, "(%d more domains: a taller terminal, or top -b)\n", len(ds)-i)
			break
		}
		fmt.Fprintln(w, clip(topRow(d, width), view.cols))
	}
}

// clip cuts a line to cols columns (0: no limit).
func clip(s string, cols int) string {
	if cols > 0 && len(s) > cols {
		return s[:cols]
	}
	return s
}

// runTop is xentop: live by default, -b for batch output scripts can parse.
func runTop(e *env, args []string) error {
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	batch := fs.Bool("b", false, "batch mode: print and exit after -i iterations")
	iters := fs.Int("i", 0, "iterations (batch default 1, live forever)")
	delay := fs.Float64("d", 1, "seconds between updates")
	sortBy := fs.String("sort", "name", "sort by name, cpu, mem, steal, net or vbd (live: the keys n c m s t v)")
	full := fs.Bool("f", false, "full names (xentop cuts them to 10 characters)")
	asJSON := fs.Bool("json", false, "print the figures as JSON (one object per iteration)")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if topSorts[*sortBy] == nil {
		return usageError{fmt.Sprintf("--sort %q: use name, cpu, mem, steal, net or vbd", *sortBy)}
	}
	if *delay < 0.1 {
		return usageError{"-d must be at least 0.1 seconds"}
	}
	in, isFile := e.stdin.(*os.File)
	live := !*batch && !*asJSON && isFile && term.IsTerminal(int(in.Fd()))
	n := *iters
	if n == 0 && !live {
		n = 1
	}
	keys := make(chan byte, 8)
	if live {
		old, err := term.MakeRaw(int(in.Fd()))
		if err != nil {
			return err
		}
		defer term.Restore(int(in.Fd()), old)
		go func() {
			b := make([]byte, 1)
			for {
				if _, err := in.Read(b); err != nil {
					close(keys)
					return
				}
				keys <- b[0]
			}
		}()
	}
	for i := 0; n == 0 || i < n; i++ {
		if i > 0 {
			select {
			case k, ok := <-keys:
				if !ok || k == 'q' || k == 3 {
					return nil
				}
				if key, ok := topKeys[k]; ok {
					*sortBy = key
				}
			case <-time.After(time.Duration(*delay * float64(time.Second))):
			}
		}
		s, err := e.client().Stats(ctx())
		if err != nil {
			return err
		}
		switch {
		case *asJSON:
			printJSON(e.stdout, s)
		case live:
			// The screen holds the 4 header lines, the rows, a blank and
			// the key line: never more, or the terminal scrolls.
			view := topView{sortBy: *sortBy, full: *full}
			if f, ok := e.stdout.(*os.File); ok {
				if cols, rows, err := term.GetSize(int(f.Fd())); err == nil {
					view.rows, view.cols = max(rows-6, 1), cols
				}
			}
			var b strings.Builder
			renderTop(&b, s, view)
			b.WriteString("\n" + clip(topKeyHelp, view.cols))
			fmt.Fprint(e.stdout, "\x1b[H\x1b[2J"+strings.ReplaceAll(b.String(), "\n", "\r\n"))
		default:
			renderTop(e.stdout, s, topView{sortBy: *sortBy, full: *full})
		}
	}
	return nil
}
