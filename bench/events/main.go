// Command events measures the event stream: the real bus and the real
// stream writer (internal/events.Stream, which GET /1.0/events serves)
// over a real unix socket, read by N NDJSON subscribers through the real
// client, while events are published at a fixed rate:
//
//   - delivery latency (publish -> decoded by a subscriber): p50, p99, max,
//     and p99 against the 50 ms target;
//   - one more subscriber that drops its connection every ~second and
//     resumes with since=: the events it missed (must be 0);
//   - subscribers told "lagged" (must be 0 at this load).
//
// The subscribers run in this process, on the same cores as the bus: a
// pessimistic setting (remote clients would not compete for them).
//
// Run: go run ./bench/events [-subs 100] [-rate 1000] [-duration 10s]
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
	"github.com/ringfence/ringfence/internal/events"
)

const target = 50 * time.Millisecond

type result struct {
	Subscribers  int     `json:"subscribers"`
	FullDecode   bool    `json:"full_decode"`
	Rate         int     `json:"events_per_s"`
	Published    int     `json:"published"`
	Delivered    int     `json:"delivered"`
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	Maxms        float64 `json:"max_ms"`
	P99OfTarget  float64 `json:"p99_of_target"`
	Lagged       int64   `json:"lagged"`
	Reconnects   int     `json:"reconnects"`
	MissedOnReco int     `json:"missed_by_reconnecting_subscriber"`
}

func main() {
	subs := flag.Int("subs", 100, "NDJSON subscribers")
	rate := flag.Int("rate", 1000, "events published per second")
	dur := flag.Duration("duration", 10*time.Second, "how long to publish")
	full := flag.Bool("full-decode", false, "subscribers decode every event whole (internal/client) instead of reading only its time")
	prof := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	stopProfile := benchenv.CPUProfile(*prof)
	defer stopProfile()
	res, err := run(*subs, *rate, *dur, *full)
	benchenv.Report("events", res, err)
	if res.P99OfTarget > 1 || res.MissedOnReco != 0 || res.Lagged != 0 {
		fmt.Fprintln(os.Stderr, "bench: over target, or events missed")
		stopProfile()
		os.Exit(1)
	}
}

// serve serves the stream on a unix socket in dir.
func serve(dir string, bus *events.Bus) (*client.Client, func(), error) {
	sock := filepath.Join(dir, "events.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.Version+"/events", func(w http.ResponseWriter, r *http.Request) {
		if err := events.Stream(w, r, bus, nil); err != nil {
			code, class := api.StatusOf(err)
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(api.ErrorBody{Error: err.Error(), Class: class})
		}
	})
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	return client.New(sock), func() { hs.Close() }, nil
}

func run(nsubs, rate int, dur time.Duration, full bool) (result, error) {
	dir, err := os.MkdirTemp("", "rfbench-events")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	bus := events.New(events.Config{})
	c, stop, err := serve(dir, bus)
	if err != nil {
		return result{}, err
	}
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := result{Subscribers: nsubs, Rate: rate, FullDecode: full}
	lat := make([][]time.Duration, nsubs)
	var ready, done sync.WaitGroup
	var lagged atomic.Int64
	for i := range nsubs {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			first := true
			err := follow(ctx, c, full, func(t time.Time) {
				if first {
					first = false
					ready.Done()
					return
				}
				lat[i] = append(lat[i], time.Since(t))
			})
			var lag *client.LaggedError
			if errors.As(err, &lag) {
				lagged.Add(1)
			}
		}()
	}
	bus.Publish(api.Event{Type: api.EventHost, Action: "bench-start"})
	ready.Wait()
	seen, reconnects, caught := reconnector(ctx, c, bus.Head())
	res.Published = publish(bus, rate, dur)
	// The last ones arrive (a loaded host may be seconds behind).
	deadline := time.Now().Add(60 * time.Second)
	for caught.Load() < bus.Head() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	done.Wait()
	got := <-seen
	res.Reconnects = <-reconnects
	res.MissedOnReco = res.Published - got
	res.Lagged = lagged.Load()
	summarize(&res, lat)
	return res, nil
}

// publish publishes at rate for dur, on schedule (catching up when late).
func publish(bus *events.Bus, rate int, dur time.Duration) int {
	n := int(dur.Seconds() * float64(rate))
	every := time.Second / time.Duration(rate)
	t0 := time.Now()
	for i := range n {
		if d := time.Until(t0.Add(time.Duration(i) * every)); d > 0 {
			time.Sleep(d)
		}
		bus.Publish(api.Event{Type: api.EventLifecycle, Action: api.EvStarted, Domain: fmt.Sprintf("g%d", i%500)})
	}
	return n
}

// reconnector follows the stream from after seq, dropping its connection
// every ~second and resuming with since=; it reports the distinct
// published events it saw, how often it reconnected, and (as it goes) the
// last seq it has.
func reconnector(ctx context.Context, c *client.Client, after uint64) (<-chan int, <-chan int, *atomic.Uint64) {
	seen, recos := make(chan int, 1), make(chan int, 1)
	var caught atomic.Uint64
	go func() {
		last, distinct, n := after, 0, 0
		for ctx.Err() == nil {
			sctx, scancel := context.WithTimeout(ctx, 700*time.Millisecond+time.Duration(n%5)*100*time.Millisecond)
			c.Events(sctx, int64(last), func(ev api.Event) error {
				if ev.Seq == last+1 {
					distinct++
				}
				last = max(last, ev.Seq)
				caught.Store(last)
				return nil
			})
			scancel()
			n++
		}
		seen <- distinct
		recos <- n - 1
	}()
	return seen, recos, &caught
}

func summarize(res *result, lat [][]time.Duration) {
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	res.Delivered = len(all)
	if len(all) == 0 {
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res.P50ms = ms(all[len(all)/2])
	res.P99ms = ms(all[len(all)*99/100])
	res.Maxms = ms(all[len(all)-1])
	res.P99OfTarget = float64(all[len(all)*99/100]) / float64(target)
}

// follow reads the stream from now on, calling fn with each event's
// publish time: decoded whole by the client (full), or read from the raw
// NDJSON line (what the daemon delivers, without the decoding cost of 100
// clients that would run elsewhere competing for this host's cores).
func follow(ctx context.Context, c *client.Client, full bool, fn func(time.Time)) error {
	if full {
		return c.Events(ctx, 0, func(ev api.Event) error { fn(ev.Time); return nil })
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://ringfence"+api.Version+"/events?since=0", nil)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", c.Socket)
	}}}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	key := []byte(`"time":"`)
	for sc.Scan() {
		line := sc.Bytes()
		i := bytes.Index(line, key)
		if i < 0 {
			continue
		}
		rest := line[i+len(key):]
		j := bytes.IndexByte(rest, '"')
		t, err := time.Parse(time.RFC3339Nano, string(rest[:max(j, 0)]))
		if err != nil {
			return err
		}
		if bytes.Contains(line, []byte(`"type":"lagged"`)) {
			return &client.LaggedError{}
		}
		fn(t)
	}
	return sc.Err()
}
