package e2e

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// The browser tests drive Debian's chromium headless (chromedp) against
// the web admin on a daemon's API listener, reached through a forwarder
// from the host into the test's network namespace.

//go:embed testdata/axe.min.js
var axeSource string

// chromium is where the tests find the browser (scripts/deps.sh
// installs it).
const chromium = "/usr/bin/chromium"

// forward listens on the host's loopback and connects each connection to
// addr inside ns: the browser (on the host) reaches the daemon (in the
// namespace). Stopping the daemon closes the forwarded connections; the
// listener stays, so a restarted daemon is reached at the same URL.
func forward(t *testing.T, ns, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				var up net.Conn
				err := inNetnsErr(ns, func() (err error) {
					up, err = net.DialTimeout("tcp", addr, 5*time.Second)
					return err
				})
				if err != nil {
					c.Close()
					return
				}
				mu.Lock()
				conns = append(conns, c, up)
				mu.Unlock()
				go func() { io.Copy(up, c); up.Close() }()
				io.Copy(c, up)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "https://" + ln.Addr().String()
}

// browser is one headless chromium with one tab.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string

	mu      sync.Mutex
	console []string
}

// shotDir is where the tests save screenshots (RF_UI_SHOTS, or a
// directory under /tmp that is kept).
func shotDir(t *testing.T) string {
	d := os.Getenv("RF_UI_SHOTS")
	if d == "" {
		d = filepath.Join(os.TempDir(), "rf-ui-shots")
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("no chromium at %s: run scripts/deps.sh (apt-get install chromium)", chromium)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.IgnoreCertErrors, chromedp.Flag("disable-quic", true), chromedp.WindowSize(1280, 900))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	// The first action starts the browser: no timeout on its context
	// (a timeout there would end the browser with it).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		cancel()
		acancel()
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() { cancel(); acancel() })
	b := &browser{t: t, ctx: ctx, base: base, shots: shotDir(t)}
	// The page's console (errors, exceptions), for a failure's report.
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m.String())
			b.mu.Unlock()
		}
	}()
	return b
}

// consoleTail is the page's last console messages.
func (b *browser) consoleTail() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.console[max(0, len(b.console)-20):], "\n")
}

// do runs steps with a deadline.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shot("failed")
		b.t.Fatalf("browser: %v\npage: %s\nconsole:\n%s", err, b.text("body"), b.consoleTail())
	}
}

// eval runs js in the page and decodes its value.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// wait polls js (an expression) until it is true.
func (b *browser) wait(what, js string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		ctx, cancel := context.WithTimeout(b.ctx, left+5*time.Second)
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(left), chromedp.WithPollingInterval(100*time.Millisecond)))
		cancel()
		if err == nil {
			return
		}
		// A navigation under the poll ends its page's context: poll the
		// new page.
		if strings.Contains(err.Error(), "Cannot find context") && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		b.shot("failed")
		b.t.Fatalf("waiting for %s (%s): %v\npage: %s\nconsole:\n%s", what, js, err, b.text("body"), b.consoleTail())
	}
}

// text is the visible text of the first element sel matches ("" if none).
func (b *browser) text(sel string) string {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q)||{}).innerText||""`, sel)))
	return s
}

// open goes to a page of the web admin (hash route) and waits for it.
func (b *browser) open(route, ready string) {
	b.t.Helper()
	b.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = %q`, route)))
	b.wait(route, ready, 30*time.Second)
}

// typeLine types s into the focused element as text input (chromedp's
// key events double every character in xterm.js), then presses Enter (a
// key without text: xterm sends its CR).
func (b *browser) typeLine(s string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	_, err := chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: s})
	for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
		if err == nil {
			_, err = chromedp.Call(ctx, input.DispatchKeyEvent, input.DispatchKeyEventParams{Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13})
		}
	}
	if err != nil {
		b.t.Fatalf("typing %q: %v", s, err)
	}
}

// shot saves a screenshot of the page as NAME.png.
func (b *browser) shot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err == nil {
		err = os.WriteFile(filepath.Join(b.shots, name+".png"), buf, 0o644)
	}
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

// setCookie replaces the session cookie's value (an expired session).
func (b *browser) setCookie(value string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: "rf_session", Value: value, URL: b.base + "/", HTTPOnly: new(true), Secure: new(true), SameSite: network.CookieSameSiteStrict}); err != nil {
		b.t.Fatalf("setting the cookie: %v", err)
	}
}

// axeViolation is one rule axe-core found broken.
type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target []any `json:"target"`
	} `json:"nodes"`
}

// audit runs axe-core on the page for WCAG 2.1 A and AA and fails on any
// violation.
func (b *browser) audit(page string) {
	b.t.Helper()
	if !eval[bool](b, `typeof axe !== "undefined"`) {
		eval[chromedp.Void](b, axeSource+";0")
	}
	raw := eval[[]byte](b, `axe.run(document, {runOnly: {type: "tag", values: ["wcag2a","wcag2aa","wcag21a","wcag21aa"]}}).then(r => JSON.stringify(r.violations))`)
	var s string
	var vs []axeViolation
	if err := json.Unmarshal(raw, &s); err != nil || json.Unmarshal([]byte(s), &vs) != nil {
		b.t.Fatalf("axe on %s: %s", page, raw)
	}
	for _, v := range vs {
		var where []string
		for _, n := range v.Nodes {
			where = append(where, fmt.Sprint(n.Target...))
		}
		b.t.Errorf("axe on %s: %s (%s): %s at %s", page, v.ID, v.Impact, v.Help, strings.Join(where, "; "))
	}
}
