// Dashboard: the ledger (what is committed, what is free, guarantees per
// domain), steal per domain, the last refusals and the task log. It reads
// once, then re-reads only what an event says changed (no polling).
import { h, api, can, onEvent, act, mib, when } from './app.js';

export async function render(main) {
  const ledgerBox = h('section', { 'aria-labelledby': 'h-ledger' }, h('h2', { id: 'h-ledger' }, 'Host ledger'));
  const domBox = h('section', { 'aria-labelledby': 'h-guar' }, h('h2', { id: 'h-guar' }, 'Guarantees per domain'));
  const refBox = h('section', { 'aria-labelledby': 'h-ref' }, h('h2', { id: 'h-ref' }, 'Last refusals'));
  const opsBox = h('section', { 'aria-labelledby': 'h-ops' }, h('h2', { id: 'h-ops' }, 'Task log'));
  main.replaceChildren(h('h1', {}, 'Dashboard'), ledgerBox, domBox, refBox, opsBox);

  const parts = {
    async ledger() {
      const s = (await import('./app.js')).state.session;
      const stats = await api('GET', '/stats').catch(() => ({ domains: [] }));
      if (can('host.read')) {
        const info = await api('GET', '/host');
        fill(ledgerBox, ledgerView(info.ledger, info));
        fill(domBox, guaranteesView(info.ledger.entries || [], stats.domains));
      } else if (s.tenant) {
        const t = await api('GET', '/tenants/' + encodeURIComponent(s.tenant));
        fill(ledgerBox, tenantView(t));
        const ds = await api('GET', '/domains');
        fill(domBox, guaranteesView((ds || []).map((d) => ({ domain: d.spec.name, memory_mib: d.spec.memory_mib, overhead_mib: 0, vcpus: d.spec.vcpus })), stats.domains));
      }
    },
    async ops() {
      const ops = await api('GET', '/operations');
      ops.sort((a, b) => (b.created > a.created ? 1 : -1));
      fill(opsBox, opsView(ops.slice(0, 25), () => parts.ops()));
      const failed = ops.filter((o) => o.status === 'failure').slice(0, 10).map((o) => ({ time: o.updated, what: `${o.kind} ${o.domain || ''}`, why: o.error }));
      let refused = failed;
      if (can('audit.read')) {
        const recs = await api('GET', '/audit?limit=200').catch(() => []);
        refused = recs.filter((r) => r.status >= 400).map((r) => ({ time: r.time, what: `${r.method} ${r.path} by ${r.principal}`, why: `${r.status} ${r.class || ''}` }))
          .concat(failed).sort((a, b) => (b.time > a.time ? 1 : -1)).slice(0, 10);
      }
      fill(refBox, refusalsView(refused));
    },
  };
  await Promise.all([parts.ledger(), parts.ops()]).catch((e) => fill(ledgerBox, h('p', { role: 'alert' }, e.message)));
  let pending = null;
  const off = onEvent((ev) => {
    // Several events in a burst cost one re-read.
    if (pending) return;
    pending = setTimeout(() => { pending = null; parts.ledger().catch(() => {}); parts.ops().catch(() => {}); }, 150);
  });
  return () => { off(); clearTimeout(pending); };
}

function fill(box, ...content) { box.replaceChildren(box.firstChild, ...content); }

function bar(label, parts, total) {
  return h('div', { class: 'bar', role: 'img', 'aria-label': label },
    parts.map(([cls, n]) => h('span', { class: cls, style: `width:${total ? (100 * n / total).toFixed(2) : 0}%` })));
}

function ledgerView(l, info) {
  l.entries = l.entries || [];
  const guest = l.entries.reduce((a, e) => a + e.memory_mib, 0);
  const over = l.entries.reduce((a, e) => a + e.overhead_mib, 0);
  const tenants = (l.tenants || []).reduce((a, t) => a + Math.max(0, t.memory_mib - t.used_memory_mib), 0);
  const vcpus = l.entries.reduce((a, e) => a + e.vcpus, 0);
  const vmax = Math.floor(l.cpus * l.vcpu_ratio);
  return h('div', {},
    h('div', { class: 'cards' },
      h('div', { class: 'card', id: 'mem-card' }, h('div', {}, 'Memory committed'),
        h('div', { class: 'big' }, `${mib(guest + over)} of ${mib(l.total_mib - l.reserved_mib)}`),
        h('div', { class: 'muted' }, `guests ${mib(guest)} + QEMU overhead ${mib(over)}; free ${mib(l.free_mib)}; host reserve ${mib(l.reserved_mib)}${tenants ? '; tenants\' unused reservations ' + mib(tenants) : ''}`),
        bar(`memory: ${guest} MiB guests, ${over} MiB overhead, ${tenants} MiB reserved for tenants, of ${l.total_mib - l.reserved_mib} MiB`,
          [['used', guest], ['over', over], ['res', tenants]], l.total_mib - l.reserved_mib)),
      h('div', { class: 'card', id: 'cpu-card' }, h('div', {}, 'vCPUs'),
        h('div', { class: 'big' }, `${vcpus} of ${vmax}`),
        h('div', { class: 'muted' }, `${l.cpus} host CPUs × ratio ${l.vcpu_ratio}; ${l.vcpus_free} free`),
        bar(`vCPUs: ${vcpus} of ${vmax}`, [['used', vcpus]], vmax)),
      h('div', { class: 'card' }, h('div', {}, 'Host'), h('div', { class: 'big' }, info.hostname),
        h('div', { class: 'muted' }, `${info.accel}, QEMU ${info.qemu_version}; ${info.domains} domains`))),
    info.qemu_overhead ? h('p', { class: 'muted' }, 'QEMU overhead is counted as: ' + info.qemu_overhead) : null);
}

function tenantView(t) {
  const q = t.quota, u = t.usage;
  return h('div', { class: 'cards' },
    h('div', { class: 'card' }, h('div', {}, `Tenant ${t.name}: memory`), h('div', { class: 'big' }, `${mib(u.memory_mib || 0)} of ${mib(q.memory_mib || 0)}`)),
    h('div', { class: 'card' }, h('div', {}, 'vCPUs'), h('div', { class: 'big' }, `${u.vcpus || 0} of ${q.vcpus || 0}`)));
}

function guaranteesView(entries, stats) {
  const steal = Object.fromEntries((stats || []).map((s) => [s.name, s]));
  if (!entries.length) return h('p', { class: 'muted' }, 'No domain holds memory.');
  return h('table', { id: 'guarantees' },
    h('caption', { class: 'muted' }, 'What each domain is guaranteed (admitted in the ledger), and the steal it sees'),
    h('thead', {}, h('tr', {}, ['Domain', 'Memory', 'QEMU overhead', 'vCPUs', 'CPU %', 'Steal %'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, entries.map((e) => {
      const s = steal[e.domain] || {};
      return h('tr', {}, h('td', {}, h('a', { href: '#/domain/' + encodeURIComponent(e.domain) }, e.domain)),
        h('td', {}, mib(e.memory_mib)), h('td', {}, mib(e.overhead_mib)), h('td', {}, e.vcpus),
        h('td', {}, (s.cpu_pct || 0).toFixed(1)), h('td', {}, (s.steal_pct || 0).toFixed(1)));
    })));
}

function refusalsView(list) {
  if (!list.length) return h('p', { class: 'muted' }, 'Nothing refused lately.');
  return h('ul', { id: 'refusals' }, list.map((r) => h('li', {}, h('span', { class: 'muted' }, when(r.time) + ' '), r.what + ': ', r.why)));
}

function opsView(ops, reload) {
  if (!ops.length) return h('p', { class: 'muted' }, 'No operations yet.');
  return h('table', { id: 'ops' },
    h('thead', {}, h('tr', {}, ['Started', 'Task', 'Domain', 'Status', 'Progress', 'By', ''].map((c, i) => h('th', { scope: 'col' }, c || h('span', { class: 'skip' }, i ? 'Actions' : ''))))),
    h('tbody', {}, ops.map((o) => {
      const p = o.progress;
      const pct = p && p.total_bytes ? Math.round(100 * p.done_bytes / p.total_bytes) : null;
      return h('tr', { 'data-op': o.id },
        h('td', {}, when(o.created)), h('td', {}, o.kind), h('td', {}, o.domain || ''),
        h('td', {}, o.status + (o.error ? ': ' + o.error : '')),
        h('td', {}, p ? [p.phase + ' ', pct !== null ? h('progress', { class: 'progress', max: '100', value: String(pct), 'aria-label': `${o.kind} progress` }) : ''] : ''),
        h('td', {}, o.owner || ''),
        h('td', {}, o.status === 'running' ? h('button', { type: 'button', onclick: async () => { await act('Cancel ' + o.kind, () => api('DELETE', '/operations/' + o.id)); reload(); } }, 'Cancel') : ''));
    })));
}
