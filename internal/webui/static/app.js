// The web admin's shell: the session, the API client (the same /1.0 API
// as the CLI), the event stream with its reconnect, and the router. Pages
// are modules loaded when first opened.
export const state = { session: null, lastSeq: 0, connected: false };

const $ = (sel) => document.querySelector(sel);

// h builds an element: h('button', {class: 'x', onclick: fn}, 'text', child...).
export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat(Infinity)) if (kid !== null && kid !== undefined && kid !== false) el.append(kid.nodeType ? kid : String(kid));
  return el;
}

export const can = (perm) => !!state.session && state.session.perms.includes(perm);

// flash shows one message at the top of the page (an error unless info).
export function flash(msg, info) {
  const f = $('#flash');
  f.textContent = msg;
  f.className = info ? 'flash info' : 'flash';
  f.setAttribute('role', info ? 'status' : 'alert');
  f.hidden = !msg;
}

// APIError carries the API's status and message.
export class APIError extends Error {
  constructor(status, msg, cls) { super(msg); this.status = status; this.cls = cls; }
}

// api calls /1.0 with the session cookie, and on writes the CSRF token.
export async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: 'same-origin' };
  if (method !== 'GET') opts.headers['X-CSRF-Token'] = state.session ? state.session.csrf : '';
  if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
  let r;
  try { r = await fetch('/1.0' + path, opts); } catch (e) { throw new APIError(0, 'the daemon cannot be reached: ' + e.message); }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) {
    const msg = (data && data.error) || r.statusText;
    if (r.status === 401) { sessionLost(msg); }
    throw new APIError(r.status, msg, data && data.class);
  }
  return data;
}

// act runs a write and says how it went; nothing else is done on error.
export async function act(what, fn) {
  try { const out = await fn(); flash(what + ': done', true); return out; }
  catch (e) { flash(what + ' failed: ' + e.message); return undefined; }
}

// confirmDialog asks before something that cannot be undone.
export function confirmDialog(question, yes) {
  return new Promise((resolve) => {
    const d = h('dialog', { 'aria-labelledby': 'confirm-q' },
      h('p', { id: 'confirm-q' }, question),
      h('div', { class: 'toolbar' },
        h('button', { class: 'danger', type: 'button', onclick: () => { d.close(); resolve(true); } }, yes),
        h('button', { type: 'button', onclick: () => { d.close(); resolve(false); } }, 'Cancel')));
    d.addEventListener('close', () => { d.remove(); resolve(false); });
    document.body.append(d);
    d.showModal();
  });
}

// ---- the event stream ----
const listeners = new Set();
export function onEvent(fn) { listeners.add(fn); return () => listeners.delete(fn); }
let ws = null, retry = 0;

function banner(msg) { const b = $('#conn'); b.textContent = msg; b.hidden = !msg; }

// connectEvents opens /1.0/events over a WebSocket from the last seq
// seen; when it drops, the page says so and tries again with backoff.
function connectEvents() {
  if (ws || !state.session) return;
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const since = state.lastSeq ? '?since=' + state.lastSeq : '';
  const sock = new WebSocket(`${proto}//${location.host}/1.0/events${since}`);
  ws = sock;
  sock.onopen = () => {
    const wasDown = !state.connected && retry > 0;
    state.connected = true; retry = 0; banner('');
    document.body.dataset.events = 'open';
    if (wasDown) { flash('Reconnected to the daemon; resumed from event ' + state.lastSeq, true); }
  };
  sock.onmessage = (m) => {
    let ev; try { ev = JSON.parse(m.data); } catch { return; }
    if (ev.seq && ev.type !== 'lagged') state.lastSeq = Math.max(state.lastSeq, ev.seq);
    if (ev.type === 'resync') state.lastSeq = ev.seq;
    if (ev.type === 'lagged') state.lastSeq = ev.seq;
    document.body.dataset.seq = String(state.lastSeq);
    for (const fn of listeners) { try { fn(ev); } catch (e) { console.error(e); } }
  };
  sock.onclose = () => {
    ws = null; state.connected = false;
    document.body.dataset.events = 'closed';
    if (!state.session) return;
    retry++;
    const wait = Math.min(5000, 250 * 2 ** Math.min(retry, 5));
    banner(`The daemon is not answering (connection lost). Retrying in ${Math.round(wait / 100) / 10} s; the page resumes from event ${state.lastSeq}.`);
    setTimeout(async () => {
      // The session may have ended meanwhile: ask before streaming.
      try { const r = await fetch('/ui/session', { credentials: 'same-origin' }); if (r.status === 401) { sessionLost('your session has expired or was ended: sign in again'); return; } } catch { /* still down */ }
      connectEvents();
    }, wait);
  };
}

// ---- session ----
function sessionLost(msg) {
  if (!state.session) return;
  state.session = null;
  if (ws) { ws.close(); ws = null; }
  banner('');
  showLogin(msg);
}

function showLogin(msg) {
  routeGen++;
  if (leave) { try { leave(); } catch { /* page gone */ } leave = null; }
  $('#nav').hidden = true; $('#logout').hidden = true; $('#who').textContent = '';
  const main = $('#main');
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', 'aria-describedby': 'token-help' });
  const user = h('input', { id: 'user', type: 'text', autocomplete: 'username' });
  const pass = h('input', { id: 'password', type: 'password', autocomplete: 'current-password' });
  const form = h('form', { class: 'login', id: 'login' },
    h('h1', {}, 'Sign in'),
    h('label', { for: 'user' }, 'User'), user,
    h('label', { for: 'password' }, 'Password'), pass,
    h('p', { class: 'muted' }, 'or'),
    h('label', { for: 'token' }, 'API token'), input,
    h('p', { id: 'token-help', class: 'muted' }, 'A token made with ringfence token create NAME --role ROLE (the user is its name, with a password set by --password-stdin); the role and tenant are the token\'s.'),
    h('button', { class: 'primary', type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = input.value ? { token: input.value } : { user: user.value, password: pass.value };
    const r = await fetch('/ui/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) { flash('Sign-in refused: ' + (data.error || r.statusText)); return; }
    input.value = ''; pass.value = '';
    flash('');
    signedIn(data);
  });
  main.replaceChildren(form);
  if (msg) flash(msg);
  document.title = 'Sign in · Ringfence';
}

function signedIn(s) {
  state.session = s;
  $('#who').textContent = `${s.name} (${s.role}${s.tenant ? ', tenant ' + s.tenant : ''})`;
  $('#logout').hidden = false;
  for (const a of document.querySelectorAll('#nav a')) a.hidden = !can(a.dataset.perm);
  $('#nav').hidden = false;
  connectEvents();
  route();
}

// ---- router ----
const pages = {
  dashboard: () => import('./dashboard.js'),
  domains: () => import('./domains.js'),
  domain: () => import('./domain.js'),
  create: () => import('./create.js'),
  networks: () => import('./admin.js'), storage: () => import('./admin.js'), host: () => import('./admin.js'),
  tokens: () => import('./admin.js'), tenants: () => import('./admin.js'), usage: () => import('./usage.js'),
};
let leave = null;
// routeGen counts navigations (and sign-outs): a page still loading when
// another took its place draws nothing.
let routeGen = 0;

export async function route() {
  if (!state.session) return;
  const gen = ++routeGen;
  const [name, ...args] = (location.hash.replace(/^#\/?/, '') || 'dashboard').split('/').map(decodeURIComponent);
  const load = pages[name] || pages.dashboard;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.getAttribute('href') === '#/' + name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (leave) { try { leave(); } catch { /* page gone */ } leave = null; }
  flash('');
  const main = $('#main');
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  const mod = await load();
  if (gen !== routeGen || !state.session) return;
  const page = pages[name] ? name : 'dashboard';
  document.title = page[0].toUpperCase() + page.slice(1) + ' · Ringfence';
  try { leave = await mod.render(main, page, args) || null; }
  catch (e) {
    // A session that ended meanwhile shows the sign-in form, not an error.
    if (state.session) main.replaceChildren(h('h1', {}, 'Error'), h('p', { role: 'alert' }, e.message));
  }
}

window.addEventListener('hashchange', route);
// Whatever a page did not expect is said, not swallowed.
window.addEventListener('unhandledrejection', (e) => flash('Unexpected error: ' + (e.reason && e.reason.message || e.reason)));
window.addEventListener('error', (e) => flash('Unexpected error: ' + e.message));
$('#logout').addEventListener('click', async () => {
  await fetch('/ui/logout', { method: 'POST', headers: { 'X-CSRF-Token': state.session ? state.session.csrf : '' } });
  sessionLost('Signed out.');
  flash('Signed out.', true);
});

(async () => {
  const r = await fetch('/ui/session', { credentials: 'same-origin' }).catch(() => null);
  if (r && r.ok) signedIn(await r.json()); else showLogin('');
})();

// fmt helpers the pages share.
export const mib = (n) => n >= 1024 ? (n / 1024).toFixed(1) + ' GiB' : Math.round(n) + ' MiB';
export const rate = (bps) => bps >= 1048576 ? (bps / 1048576).toFixed(1) + ' MB/s' : bps >= 1024 ? (bps / 1024).toFixed(1) + ' KB/s' : Math.round(bps) + ' B/s';
export const when = (t) => t ? new Date(t).toLocaleTimeString() : '';
export function stateOf(d) { return d.state || 'unknown'; }
