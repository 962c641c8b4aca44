package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/image"
)

// uiEnv is a daemon with its API listener, a browser on its web admin,
// and tokens of several roles.
type uiEnv struct {
	*Env
	t       *testing.T
	b       *browser
	r       remoteCLI
	secrets map[string]string
}

func newUIEnv(t *testing.T) *uiEnv {
	addr := fmt.Sprintf("127.0.0.1:%d", 46000+os.Getpid()%15000)
	prices := filepath.Join(t.TempDir(), "prices.conf")
	if err := os.WriteFile(prices, []byte("currency = \"EUR\"\nvcpu_hour = 0.5\nram_gib_hour = 0.25\ndisk_gib_month = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := NewEnv(t, "--api-listen", addr, guestStorage(), "--vcpu-ratio", "4", "--prices", prices)
	u := &uiEnv{Env: e, t: t, secrets: map[string]string{}, r: remoteCLI{t: t, e: e, cfg: filepath.Join(e.Dir, "remotes.json")}}
	for _, tn := range []string{"ta", "tb"} {
		e.MustRF("tenant", "create", tn, "--memory", "300", "--vcpus", "1")
	}
	// The default image: a host pool every tenant may read.
	e.MustRF("pool", "create", "images", "--dir", filepath.Dir(imgPaths.Kernel), "--shared")
	for name, args := range map[string][]string{
		"admin": {"--role", "admin"},
		"ta":    {"--role", "tenant-admin", "--tenant", "ta"}, "tb": {"--role", "tenant-admin", "--tenant", "tb"},
	} {
		u.secrets[name] = strings.TrimSpace(e.MustRF(append([]string{"token", "create", "ui-" + name}, args...)...))
	}
	// The auditor is a person: user ui-auditor, with a password.
	if _, err := e.Client.CreateToken(context.Background(), api.APITokenRequest{Name: "ui-auditor", Role: "auditor", Password: auditorPassword}); err != nil {
		t.Fatal(err)
	}
	for _, tn := range []string{"ta", "tb"} {
		u.r.must("remote", "add", tn, "https://"+addr, "--token", u.secrets[tn], "--accept-certificate")
	}
	u.b = newBrowser(t, forward(t, e.Netns, addr))
	return u
}

// TestWebUI: the web admin in real chromium against a real daemon and a
// real guest: sign in (a bad token refused), create from an uploaded file
// (its errors shown at file:line:col as `config check` shows them,
// nothing created; then the fixed file), the domain reaching running
// through events, a command typed in the serial console and its output
// read, pause/unpause, a memory change moving the graph; a stale CSRF
// token, an auditor's forbidden action and an expired session each
// refused with a message and nothing changed; a tenant user seeing
// neither the host's nor another tenant's domain; the daemon restarted
// under the open page (it says so, reconnects and resumes from its last
// event without a reload); a domain destroyed while its page is open;
// axe-core finding no WCAG 2.1 AA violation on any page.
func TestWebUI(t *testing.T) {
	u := newUIEnv(t)
	u.login()
	u.createFromFile()
	u.console()
	u.pauseUnpause()
	u.memoryGraph()
	u.refusals()
	u.auditPages()
	u.usagePage()
	u.tenantIsolation()
	u.reconnect()
	u.deletedWhileOpen()
}

// signIn signs in with who's token from the sign-in form.
func (u *uiEnv) signIn(who string) {
	b := u.b
	b.wait("the sign-in form", `!!document.querySelector('#token')`, 30*time.Second)
	b.do(chromedp.SetValue(chromedp.ID("token"), u.secrets[who]), chromedp.Click(chromedp.CSS(`#login button[type=submit]`)))
	b.wait("signed in as "+who, `!document.querySelector('#nav').hidden && document.body.dataset.events === 'open'`, 30*time.Second)
}

const auditorPassword = "audit-all-the-things"

// signInPassword signs in with a user (a token's name) and password.
func (u *uiEnv) signInPassword(user, pw, refused string) {
	b := u.b
	b.wait("the sign-in form", `!!document.querySelector('#user')`, 30*time.Second)
	b.do(chromedp.SetValue(chromedp.ID("user"), user), chromedp.SetValue(chromedp.ID("password"), pw),
		chromedp.Click(chromedp.CSS(`#login button[type=submit]`)))
	if refused != "" {
		b.wait("the refusal", fmt.Sprintf(`document.querySelector('#flash').innerText.includes(%q)`, refused), 20*time.Second)
		return
	}
	b.wait("signed in as "+user, `!document.querySelector('#nav').hidden && document.body.dataset.events === 'open'`, 30*time.Second)
}

func (u *uiEnv) signOut() {
	u.b.do(chromedp.Click(chromedp.ID("logout")))
	u.b.wait("signed out", `!!document.querySelector('#token')`, 20*time.Second)
}

func (u *uiEnv) login() {
	b := u.b
	b.do(chromedp.Navigate(b.base + "/ui/"))
	b.wait("the sign-in form", `!!document.querySelector('#token')`, 30*time.Second)
	b.audit("sign-in")
	b.shot("login")
	b.do(chromedp.SetValue(chromedp.ID("token"), "rf_nobody_"+strings.Repeat("A", 43)), chromedp.Click(chromedp.CSS(`#login button[type=submit]`)))
	b.wait("the refusal", `document.querySelector('#flash').innerText.includes('invalid API token')`, 20*time.Second)
	u.signIn("admin")
	if who := b.text("#who"); !strings.Contains(who, "ui-admin (admin)") {
		u.t.Fatalf("signed in as %q", who)
	}
	b.wait("the ledger", `!!document.querySelector('#mem-card')`, 30*time.Second)
}

// uiConfig writes a domain file for the UI to upload, as FILE.cfg.
func (u *uiEnv) uiConfig(name, file, extra string) string {
	b, err := os.ReadFile(u.WriteConfig(name, "maxmem = 192\n"+extra))
	p := filepath.Join(u.Dir, file+".cfg")
	if err == nil {
		err = os.WriteFile(p, b, 0o644)
	}
	if err != nil {
		u.t.Fatal(err)
	}
	return p
}

func (u *uiEnv) createFromFile() {
	t, b := u.t, u.b
	bad := u.uiConfig("web1", "web1-draft", `vcpus = "many"`+"\nbogus_key = 1")
	b.open("#/create", `!!document.querySelector('#cfg-file')`)
	b.do(chromedp.SetUploadFiles(chromedp.ID("cfg-file"), []string{bad}))
	b.wait("the file's errors", `document.querySelector('main').dataset.checked === 'errors'`, 30*time.Second)
	b.shot("create-errors")
	// The same diagnostics as `config check`, each at file:line:col.
	cli := u.RF("config", "check", bad)
	var want []string
	for _, l := range strings.Split(strings.TrimSpace(cli.Stderr), "\n") {
		if strings.HasPrefix(l, bad+":") {
			want = append(want, strings.Replace(l, bad, filepath.Base(bad), 1))
		}
	}
	var got []string
	for _, l := range strings.Split(b.text("#diags"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			got = append(got, l)
		}
	}
	if cli.Code == 0 || len(want) == 0 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the page's diagnostics:\n%s\nconfig check's (exit %d):\n%s", strings.Join(got, "\n"), cli.Code, strings.Join(want, "\n"))
	}
	if eval[bool](b, `!document.querySelector('#create').disabled`) {
		t.Fatal("Create is enabled for a file with errors")
	}
	if ds := u.ListAll(); len(ds) != 0 {
		t.Fatalf("a file with errors created something: %+v", ds)
	}
	good := u.uiConfig("web1", "web1", "")
	b.do(chromedp.SetUploadFiles(chromedp.ID("cfg-file"), []string{good}))
	b.wait("the fixed file checked", `document.querySelector('main').dataset.checked === 'ok'`, 30*time.Second)
	b.do(chromedp.Click(chromedp.ID("create")))
	// The page follows the domain through the event stream to running.
	b.wait("web1 running", `location.hash === '#/domain/web1' && ['running','blocked'].includes(document.querySelector('main').dataset.state)`, 120*time.Second)
	if d := u.Domain("web1"); d.PID == 0 {
		t.Fatalf("web1 is not running: %+v", d)
	}
	b.shot("domain")
}

const termText = `(() => { const t = window.__rfTerm; if (!t) return ''; const b = t.buffer.active; let s = ''; for (let i = 0; i < b.length; i++) s += b.getLine(i).translateToString(true) + '\n'; return s; })()`

func (u *uiEnv) console() {
	b := u.b
	b.do(chromedp.Click(chromedp.ID("open-console")))
	b.wait("the guest's ready line in the console", termText+`.includes(`+fmt.Sprintf("%q", image.ReadyLine)+`)`, 180*time.Second)
	b.do(chromedp.Click(chromedp.CSS("#term .xterm")))
	// Typed as text (a paste is the same: keystrokes to the guest).
	b.typeLine("echo ui-$((6*7))")
	b.wait("the command's output", termText+`.includes('ui-42')`, 60*time.Second)
	b.shot("console")
}

// state is the domain's state as the open domain page shows it.
func (u *uiEnv) waitState(what string, states ...string) {
	u.b.wait(what, fmt.Sprintf(`%q.includes(document.querySelector('main').dataset.state)`, strings.Join(states, ",")), 60*time.Second)
}

// press clicks a lifecycle button once it is enabled (in one step in the
// page: the buttons are redrawn as events arrive).
func (u *uiEnv) press(verb string) {
	sel := fmt.Sprintf(`document.querySelector('[data-verb=%s]')`, verb)
	u.b.wait(verb+" enabled", sel+` && !`+sel+`.disabled`, 30*time.Second)
	u.b.do(chromedp.Evaluate[chromedp.Void](sel + `.click()`))
}

func (u *uiEnv) pauseUnpause() {
	u.press("pause")
	u.waitState("paused", "paused")
	if d := u.Domain("web1"); d.State != api.StatePaused {
		u.t.Fatalf("the page says paused, the daemon %s", d.State)
	}
	u.press("unpause")
	u.waitState("running again", "running", "blocked")
}

func (u *uiEnv) memoryGraph() {
	t, b := u.t, u.b
	b.wait("memory points", `Number(document.querySelector('[data-graph=mem]').dataset.points) >= 3`, 30*time.Second)
	before := eval[float64](b, `Number(document.querySelector('[data-graph=mem]').dataset.last)`)
	b.do(chromedp.SetValue(chromedp.ID("mem-set-mib"), "96"), chromedp.Click(chromedp.CSS(`#mem-set button[type=submit]`)))
	b.wait("the memory graph to move", `Number(document.querySelector('[data-graph=mem]').dataset.last) <= 100`, 60*time.Second)
	after := eval[float64](b, `Number(document.querySelector('[data-graph=mem]').dataset.last)`)
	t.Logf("memory graph: %.0f MiB before mem-set 96, %.0f after", before, after)
	if before < 120 {
		t.Fatalf("the graph showed %.0f MiB before the change, want 128", before)
	}
	b.shot("graphs")
}

// refusals: a stale CSRF token, an auditor's action, an expired session:
// each a message on the page, nothing changed.
func (u *uiEnv) refusals() {
	t, b := u.t, u.b
	b.do(chromedp.Evaluate[chromedp.Void](`import('/ui/app.js').then(m => { m.state.session.csrf = 'stale'; })`, chromedp.EvalAwaitPromise))
	u.press("pause")
	b.wait("the stale CSRF message", `document.querySelector('#flash').innerText.includes('CSRF token is stale')`, 20*time.Second)
	b.shot("refused-csrf")
	if d := u.Domain("web1"); d.State == api.StatePaused {
		t.Fatal("a write with a stale CSRF token paused the domain")
	}
	b.do(chromedp.Evaluate[chromedp.Void](`location.reload()`))
	b.wait("the page again", `document.body.dataset.events === 'open'`, 30*time.Second)

	u.signOut()
	u.signInPassword("ui-auditor", auditorPassword+"x", "wrong user or password")
	u.signInPassword("ui-auditor", auditorPassword, "")
	b.open("#/domain/web1", `!!document.querySelector('#dom-state') && document.querySelector('#dom-state').innerText !== ''`)
	if n := eval[int](b, `document.querySelectorAll('[data-verb], #mem-set, #open-console, #migrate').length`); n != 0 {
		t.Fatalf("the auditor's page shows %d buttons or forms it may not use", n)
	}
	msg := eval[string](b, `import('/ui/app.js').then(m => m.api('POST', '/domains/web1/destroy', {}).then(() => 'done', e => e.message))`)
	if !strings.Contains(msg, "needs permission domain.operate") {
		t.Fatalf("the auditor's destroy: %q", msg)
	}
	if d := u.Domain("web1"); d.PID == 0 {
		t.Fatal("the auditor's refused destroy stopped web1")
	}
	b.setCookie("expired-session-cookie")
	b.open("#/domains", `!!document.querySelector('#token')`)
	if f := b.text("#flash"); !strings.Contains(f, "session has expired") {
		t.Fatalf("an expired session: %q", f)
	}
	b.shot("refused-session")
	u.signIn("admin")
}

func (u *uiEnv) auditPages() {
	b := u.b
	for _, p := range []struct{ route, ready, shot string }{
		{"#/dashboard", `!!document.querySelector('#mem-card') && !!document.querySelector('#ops, #h-ops + p')`, "dashboard"},
		{"#/domains", `!!document.querySelector('#domains tbody tr')`, "domains"},
		{"#/domain/web1", `!!document.querySelector('[data-graph=mem]') && !!document.querySelector('#xlcfg').innerText`, "domain-page"},
		{"#/create", `!!document.querySelector('#cfg-file')`, "create"},
		{"#/networks", `!!document.querySelector('#networks')`, "networks"},
		{"#/storage", `!!document.querySelector('#pools')`, "storage"},
		{"#/host", `!!document.querySelector('#hostinfo')`, "host"},
		{"#/tokens", `!!document.querySelector('#tokens')`, "tokens"},
		{"#/tenants", `!!document.querySelector('#tenants')`, "tenants"},
		{"#/usage", `!!document.querySelector('#usage:not([aria-busy]) #invoice')`, "usage"},
	} {
		b.open(p.route, p.ready)
		b.audit(p.route)
		b.shot(p.shot)
	}
}

// usagePage: the usage table of this month by day, hour and month (each
// period's start shown), an earlier month with nothing recorded, and the
// month's invoice: web1's vCPU-hours rated on the host's (no tenant) line.
func (u *uiEnv) usagePage() {
	t, b := u.t, u.b
	now := time.Now().UTC()
	b.open("#/usage", `!!document.querySelector('#usage:not([aria-busy]) #usage-rows tr[data-domain=web1]')`)
	// web1's rows' periods (an hour may have turned meanwhile: any row).
	periods := `[...document.querySelectorAll('#usage-rows tr[data-domain=web1] td:nth-child(3)')].map(td => td.innerText)`
	for _, c := range []struct{ by, start string }{
		{"hour", now.Format("2006-01-02 15:00")}, {"month", now.Format("2006-01-02")[:8] + "01 00:00"}, {"day", now.Format("2006-01-02") + " 00:00"},
	} {
		b.do(chromedp.SetValue(chromedp.ID("usage-by"), c.by), chromedp.Evaluate[chromedp.Void](`document.querySelector('#usage-by').dispatchEvent(new Event('change'))`))
		b.wait("web1's row by "+c.by, fmt.Sprintf(`!document.querySelector('#usage[aria-busy]') && %s.some(p => p.startsWith(%q))`, periods, c.start), 30*time.Second)
	}
	inv := `document.querySelector('#invoice table[data-tenant=""] tr[data-item=vcpu-hours]')`
	b.wait("the invoice's host line", `!!`+inv, 30*time.Second)
	if line := eval[string](b, inv+`.innerText`); !strings.Contains(line, "EUR") {
		t.Fatalf("the invoice's vcpu-hours line: %q", line)
	}
	b.shot("usage")
	before := now.AddDate(0, -2, 0).Format("2006-01")
	b.do(chromedp.SetValue(chromedp.ID("usage-month"), before), chromedp.Evaluate[chromedp.Void](`document.querySelector('#usage-month').dispatchEvent(new Event('change'))`))
	b.wait("nothing recorded in "+before, fmt.Sprintf(`!!document.querySelector('#usage-none') && document.querySelector('#h-invoice').innerText.includes(%q)`, before), 30*time.Second)
}

func (u *uiEnv) tenantIsolation() {
	t, b := u.t, u.b
	u.r.must("--remote", "tb", "define", u.WriteConfig("b1", ""))
	u.r.must("--remote", "ta", "define", u.WriteConfig("a1", ""))
	u.signOut()
	u.signIn("ta")
	b.open("#/domains", `!!document.querySelector('#domains tr[data-name=a1]')`)
	if names := eval[[]string](b, `[...document.querySelectorAll('#domains tbody tr')].map(r => r.dataset.name)`); len(names) != 1 {
		t.Fatalf("tenant ta's list: %q, want its a1 only (not web1, the host's, nor b1, tb's)", names)
	}
	b.open("#/domain/b1", `!!document.querySelector('#gone')`)
	if n := eval[int](b, `[...document.querySelectorAll('#nav a')].filter(a => !a.hidden && /Host|Tokens/.test(a.innerText)).length`); n != 0 {
		t.Fatal("a tenant's navigation offers the host's or the tokens' pages")
	}
	b.shot("tenant")
	// Its usage page: its own tenant's rows and invoice, no tenant choice.
	b.open("#/usage", `!!document.querySelector('#usage:not([aria-busy]) #invoice')`)
	got := eval[[]string](b, `[...document.querySelectorAll('#usage-rows tbody tr, #invoice table')].map(r => (r.dataset.domain || '') + '@' + r.dataset.tenant)`)
	if !slices.Contains(got, "a1@ta") || !slices.Contains(got, "@ta") || slices.ContainsFunc(got, func(s string) bool { return !strings.HasSuffix(s, "@ta") }) {
		t.Fatalf("tenant ta's usage page shows %q, want a1's rows and ta's invoice only", got)
	}
	if eval[bool](b, `!!document.querySelector('#usage-tenant')`) {
		t.Fatal("a tenant's usage page offers a tenant choice")
	}
	b.audit("#/usage (tenant)")
	b.shot("usage-tenant")
	u.MustRF("undefine", "a1")
	u.signOut()
	u.signIn("admin")
}

// reconnect: the daemon restarted under the open page: the page says the
// daemon is gone, reconnects, and resumes from its last event (an event
// made after the restart reaches the list) with no reload.
func (u *uiEnv) reconnect() {
	t, b := u.t, u.b
	b.open("#/domains", `!!document.querySelector('#domains tbody tr')`)
	b.do(chromedp.Evaluate[chromedp.Void](`window.__noReload = 1`))
	seq := eval[string](b, `document.body.dataset.seq || '0'`)
	u.StopDaemon()
	b.wait("the page to say the daemon is gone", `!document.querySelector('#conn').hidden && document.querySelector('#conn').innerText.includes('not answering')`, 30*time.Second)
	b.shot("daemon-gone")
	u.StartDaemon()
	b.wait("the page to reconnect", `document.body.dataset.events === 'open' && document.querySelector('#conn').hidden`, 60*time.Second)
	u.MustRF("define", u.WriteConfig("after1", ""))
	b.wait("the event after the restart in the list", `!!document.querySelector('#domains tr[data-name=after1]')`, 30*time.Second)
	if eval[int](b, `window.__noReload || 0`) != 1 {
		t.Fatal("the page was reloaded")
	}
	t.Logf("events resumed after seq %s, now at %s", seq, eval[string](b, `document.body.dataset.seq`))
	u.MustRF("undefine", "after1")
}

// deletedWhileOpen: web1 destroyed (by the CLI) while its page is open.
func (u *uiEnv) deletedWhileOpen() {
	b := u.b
	b.open("#/domain/web1", `['running','blocked'].includes(document.querySelector('main').dataset.state)`)
	u.MustRF("destroy", "web1")
	b.wait("the page to say web1 is gone", `!!document.querySelector('#gone')`, 30*time.Second)
	b.shot("domain-gone")
}

// TestWebUIMigrate: a migration asked from the domain page between two
// daemons: the page shows the operation's progress from the event stream
// as it goes, then that the domain has left; it runs on the destination.
func TestWebUIMigrate(t *testing.T) {
	port := 30000 + os.Getpid()%20000
	apiAddr, srcAddr, dstAddr := fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", port+1), fmt.Sprintf("127.0.0.2:%d", port+2)
	src := NewEnvWith(t, EnvOptions{ServeArgs: []string{"--api-listen", apiAddr, "--listen", srcAddr, guestStorage()}})
	src.MustRF("host", "trust", "--peer-name", "src", "--name", "127.0.0.1")
	dst := NewEnvWith(t, EnvOptions{Netns: src.Netns, ServeArgs: []string{"--listen", dstAddr, guestStorage()}})
	dst.JoinTo(src, "dst", "127.0.0.2")
	src.Boot("mover", "")
	dst.names = append(dst.names, "mover")
	u := &uiEnv{Env: src, t: t, secrets: map[string]string{"admin": strings.TrimSpace(src.MustRF("token", "create", "ui", "--role", "admin"))}}
	u.b = newBrowser(t, forward(t, src.Netns, apiAddr))
	b := u.b
	b.do(chromedp.Navigate(b.base + "/ui/"))
	u.signIn("admin")
	b.open("#/domain/mover", `['running','blocked'].includes(document.querySelector('main').dataset.state)`)
	// Every text the progress line shows, as it changes.
	b.do(chromedp.Evaluate[chromedp.Void](`window.__mig = []; new MutationObserver(() => __mig.push(document.querySelector('#migrate-progress').innerText)).observe(document.querySelector('#migrate-progress'), {childList: true, characterData: true, subtree: true})`))
	b.do(chromedp.SetValue(chromedp.ID("migrate-target"), dstAddr), chromedp.Click(chromedp.CSS(`#migrate button[type=submit]`)))
	b.wait("the page to say mover left", `!!document.querySelector('#gone')`, 180*time.Second)
	seen := eval[[]string](b, `window.__mig || []`)
	t.Logf("progress shown: %q", seen)
	joined := strings.Join(seen, "\n")
	// A fast migration's first progress event can reach the page before
	// the call that started it answers: either line shows it began.
	began := strings.Contains(joined, "started: migrate ") || strings.Contains(joined, "progress: migrate ")
	if !began || !strings.Contains(joined, "success: migrate ") {
		t.Fatalf("the page did not show the migration's progress: %q", seen)
	}
	b.shot("migrated")
	if d := dst.Domain("mover"); d.PID == 0 {
		t.Fatalf("mover is not running on the destination: %+v", d)
	}
	dst.MustRF("destroy", "mover")
}

// TestWebUIVNC: a vnc = 1 guest's page opens noVNC over the VNC
// WebSocket: a wrong password is refused in the page; the right one
// makes the RFB connection (noVNC's connect event) and the framebuffer
// is drawn into its canvas (pixels with alpha set: an untouched canvas
// has none).
func TestWebUIVNC(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", 31000+os.Getpid()%15000)
	e := NewEnvWith(t, EnvOptions{ServeArgs: []string{"--api-listen", addr}})
	const pass = "rf-ui-pw"
	e.MustRF("create", e.WriteConfig("vnc1", "type = 'hvm'\nvnc = 1\nvncpasswd = '"+pass+"'"))
	u := &uiEnv{Env: e, t: t, secrets: map[string]string{"admin": strings.TrimSpace(e.MustRF("token", "create", "ui", "--role", "admin"))}}
	u.b = newBrowser(t, forward(t, e.Netns, addr))
	b := u.b
	b.do(chromedp.Navigate(b.base + "/ui/"))
	u.signIn("admin")
	b.open("#/domain/vnc1", `!!document.querySelector('#open-vnc')`)
	// Every status the page shows, in order (each text node added: several
	// changes in one task are still each seen).
	b.do(chromedp.Evaluate[chromedp.Void](`window.__vnc = []; new MutationObserver((ms) => { for (const m of ms) for (const n of m.addedNodes) __vnc.push(n.textContent); }).observe(document.querySelector('#vnc-status'), {childList: true})`))
	connect := func(pw string) {
		b.do(chromedp.SetValue(chromedp.ID("vnc-pass"), pw), chromedp.Click(chromedp.ID("open-vnc")))
	}
	connect("wrong-pw")
	b.wait("a wrong password refused", `document.querySelector('#vnc-status').innerText.startsWith('refused: Authentication failed')`, 60*time.Second)
	if s := eval[[]string](b, `window.__vnc`); slices.Contains(s, "connected") {
		t.Fatalf("a wrong password connected: %q", s)
	}
	connect(pass)
	b.wait("noVNC's connect event", `(window.__vnc || []).includes('connected')`, 60*time.Second)
	const drawn = `(() => { const c = document.querySelector('#vncbox canvas'); if (!c || !c.width || !c.height) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })()`
	b.wait("the framebuffer drawn in the canvas", drawn+` > 0`, 60*time.Second)
	size := eval[[]int](b, `(() => { const c = document.querySelector('#vncbox canvas'); return [c.width, c.height]; })()`)
	t.Logf("canvas %dx%d, %d pixels drawn, status %q", size[0], size[1], eval[int](b, drawn), eval[[]string](b, `window.__vnc`))
	b.shot("vnc")
	e.MustRF("destroy", "vnc1")
	b.wait("the display closed with the domain", `(window.__vnc || []).some(s => s === 'closed' || s === 'connection lost') || !!document.querySelector('#gone')`, 60*time.Second)
}
