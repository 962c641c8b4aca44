// Usage and invoices: the usage ledger's rows by domain and period (hour,
// day, month, or each record) for a month, and that month's invoice lines
// per tenant. A tenant's session sees its own tenant's only (the API
// holds it to that; the page offers no tenant choice).
import { h, api, state } from './app.js';

const periods = [['day', 'Day'], ['hour', 'Hour'], ['month', 'Month'], ['', 'Each record']];

// thisMonth is YYYY-MM now, in UTC (the ledger's months are UTC).
const thisMonth = () => new Date().toISOString().slice(0, 7);

// monthBounds is [from, to) of a YYYY-MM month as RFC 3339.
export function monthBounds(month) {
  const [y, m] = month.split('-').map(Number);
  return [new Date(Date.UTC(y, m - 1, 1)).toISOString(), new Date(Date.UTC(y, m, 1)).toISOString()];
}

const hours = (ns) => ns / 3.6e12;
const num = (v, digits = 2) => Number(v).toFixed(digits);
const bytes = (n) => n >= 1 << 30 ? num(n / (1 << 30)) + ' GiB' : n >= 1 << 20 ? num(n / (1 << 20), 1) + ' MiB' : n >= 1024 ? num(n / 1024, 1) + ' KiB' : n + ' B';
const period = (r) => {
  const a = new Date(r.start_ns / 1e6).toISOString().replace('T', ' ').slice(0, 16);
  const b = new Date(r.end_ns / 1e6).toISOString().replace('T', ' ').slice(0, 16);
  return `${a} – ${b.slice(0, 10) === a.slice(0, 10) ? b.slice(11) : b} UTC`;
};

// usageCols are the table's columns: what was held, then what was used.
const usageCols = [
  ['Domain', (r) => r.domain], ['Tenant', (r) => r.tenant || ''], ['Period', period],
  ['Running', (r) => num(hours(r.run_ns)) + ' h'], ['vCPU-hours', (r) => num(hours(r.vcpu_ns))],
  ['RAM GiB-hours', (r) => num(hours(r.mem_mib_ns) / 1024)], ['CPU time', (r) => num(r.delta.cpu_ns / 1e9, 1) + ' s'],
  ['Disk read / written', (r) => `${bytes(r.delta.disk_rd_bytes)} / ${bytes(r.delta.disk_wr_bytes)}`],
  ['Net in / out', (r) => `${bytes(r.delta.net_rx_bytes)} / ${bytes(r.delta.net_tx_bytes)}`],
];

function table(id, caption, cols, rows) {
  return h('table', { id }, h('caption', {}, caption),
    h('thead', {}, h('tr', {}, cols.map(([label]) => h('th', { scope: 'col' }, label)))),
    h('tbody', {}, rows.map((r) => h('tr', { 'data-domain': r.domain || null, 'data-tenant': r.tenant ?? null }, cols.map(([, get]) => h('td', {}, get(r)))))));
}

export async function render(main) {
  const box = h('div', {});
  const month = h('input', { id: 'usage-month', type: 'month', value: thisMonth(), required: true });
  const by = h('select', { id: 'usage-by' }, periods.map(([v, l]) => h('option', { value: v }, l)));
  const domain = h('input', { id: 'usage-domain', type: 'search', placeholder: 'all' });
  const tenant = !state.session.tenant ? h('input', { id: 'usage-tenant', type: 'search', placeholder: 'all' }) : null;
  const form = h('form', { id: 'usage-form', class: 'toolbar' },
    h('label', { for: 'usage-month' }, 'Month'), month, h('label', { for: 'usage-by' }, 'Sum by'), by,
    h('label', { for: 'usage-domain' }, 'Domain'), domain,
    tenant ? [h('label', { for: 'usage-tenant' }, 'Tenant'), tenant] : '',
    h('button', { type: 'submit', class: 'primary' }, 'Show'));
  main.replaceChildren(h('h1', {}, 'Usage and invoices'),
    h('p', { class: 'muted' }, state.session.tenant ? `Tenant ${state.session.tenant}'s domains only.` : 'Every domain on this host; the invoice has lines per tenant (none: the host\'s own).'),
    form, box);
  let gen = 0;
  async function show() {
    const mine = ++gen;
    const q = new URLSearchParams();
    const [from, to] = monthBounds(month.value || thisMonth());
    q.set('from', from); q.set('to', to);
    if (by.value) q.set('by', by.value);
    if (domain.value.trim()) q.set('domain', domain.value.trim());
    if (tenant && tenant.value.trim()) q.set('tenant', tenant.value.trim());
    const out = h('div', { id: 'usage', 'aria-busy': 'true' });
    box.replaceChildren(out);
    const rows = [];
    let err = null;
    try {
      // Every page of the month (the API pages at up to 10,000 rows).
      for (let cursor = ''; ;) {
        if (cursor) q.set('cursor', cursor);
        const p = await api('GET', '/usage?' + q);
        rows.push(...(p.rows || []));
        if (!p.next || mine !== gen) break;
        cursor = p.next;
      }
    } catch (e) { err = e; }
    if (mine !== gen || !main.contains(box)) return; // shown again, or left
    out.append(h('h2', {}, 'Usage'), err ? h('p', { role: 'alert' }, 'Usage: ' + err.message)
      : rows.length ? table('usage-rows', `${rows.length} ${rows.length === 1 ? 'row' : 'rows'}, ${month.value} (UTC)`, usageCols, rows)
        : h('p', { class: 'muted', id: 'usage-none' }, 'No usage recorded in ' + month.value + '.'));
    out.append(await invoice(month.value, tenant && tenant.value.trim()));
    out.removeAttribute('aria-busy');
  }
  form.addEventListener('submit', (e) => { e.preventDefault(); show(); });
  for (const el of [month, by]) el.addEventListener('change', show);
  await show();
}

// invoice is the month's invoice: per tenant its lines and total.
async function invoice(month, tenant) {
  const sec = h('section', { id: 'invoice', 'aria-labelledby': 'h-invoice' }, h('h2', { id: 'h-invoice' }, 'Invoice ' + month));
  let inv;
  try { inv = await api('GET', '/usage/invoice?' + new URLSearchParams(tenant ? { month, tenant } : { month })); }
  catch (e) { sec.append(h('p', { id: 'invoice-none', class: e.status === 503 ? 'muted' : '', role: e.status === 503 ? null : 'alert' }, e.message)); return sec; }
  const cur = inv.currency || '';
  const byTenant = new Map();
  for (const l of inv.lines || []) {
    if (!byTenant.has(l.tenant)) byTenant.set(l.tenant, []);
    byTenant.get(l.tenant).push(l);
  }
  if (!byTenant.size) { sec.append(h('p', { id: 'invoice-none', class: 'muted' }, 'Nothing to invoice in ' + month + '.')); return sec; }
  for (const [t, lines] of byTenant) {
    const who = t || 'host (no tenant)';
    sec.append(h('table', { class: 'invoice', 'data-tenant': t },
      h('caption', {}, `${who}: ${num((inv.totals || {})[t] || 0)} ${cur}`),
      h('thead', {}, h('tr', {}, ['Item', 'Quantity', 'Unit price', 'Amount'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, lines.map((l) => h('tr', { 'data-item': l.item }, h('td', {}, l.item), h('td', {}, num(l.quantity, 3)),
        h('td', {}, `${l.unit_price} ${cur}`), h('td', {}, `${num(l.amount)} ${cur}`)))),
      h('tfoot', {}, h('tr', {}, h('th', { scope: 'row', colspan: '3' }, 'Total'), h('td', {}, `${num((inv.totals || {})[t] || 0)} ${cur}`)))));
  }
  return sec;
}
