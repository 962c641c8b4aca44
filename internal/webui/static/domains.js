// Domains: every domain the session may see, its state kept live by the
// event stream; filter, sort, and actions on the ones ticked.
import { h, api, can, onEvent, act, confirmDialog, mib, flash } from './app.js';

const cols = [
  ['name', 'Name', (d) => d.spec.name],
  ['state', 'State', (d) => d.state],
  ['id', 'ID', (d) => d.id],
  ['memory', 'Memory', (d) => d.spec.memory_mib],
  ['vcpus', 'vCPUs', (d) => d.spec.vcpus],
  ['tenant', 'Tenant', (d) => d.tenant || ''],
  ['uptime', 'Uptime', (d) => d.uptime_sec || 0],
];

// Bulk verbs: the permission each needs, and whether it asks first.
const bulk = [
  ['start', 'Start', 'domain.operate', false], ['pause', 'Pause', 'domain.operate', false],
  ['unpause', 'Unpause', 'domain.operate', false], ['shutdown', 'Shut down', 'domain.operate', false],
  ['destroy', 'Destroy', 'domain.operate', true],
];

export async function render(main) {
  const view = { list: [], filter: '', sort: 'name', dir: 1, picked: new Set() };
  const tbody = h('tbody', { role: 'rowgroup' });
  const count = h('span', { class: 'muted', 'aria-live': 'polite' });
  // Typing, sorting and events only mark the list dirty: one draw a frame.
  let frame = 0;
  const later = () => { if (!frame) frame = requestAnimationFrame(() => { frame = 0; draw(); }); };
  const filter = h('input', { id: 'filter', type: 'search', placeholder: 'name, state or tenant', oninput: () => { view.filter = filter.value.toLowerCase(); later(); } });
  const head = h('tr', { role: 'row' }, h('th', { scope: 'col', role: 'columnheader' }, h('span', { class: 'skip' }, 'Select')),
    cols.map(([key, label]) => h('th', { scope: 'col', role: 'columnheader', 'aria-sort': 'none', 'data-col': key },
      h('button', { class: 'sort', type: 'button', onclick: () => { view.dir = view.sort === key ? -view.dir : 1; view.sort = key; later(); } }, label))));
  const buttons = bulk.filter(([, , perm]) => can(perm)).map(([verb, label, , ask]) =>
    h('button', { type: 'button', class: ask ? 'danger' : '', 'data-bulk': verb, onclick: () => runBulk(verb, label, ask) }, label + ' selected'));
  main.replaceChildren(h('h1', {}, 'Domains'),
    h('div', { class: 'toolbar' }, h('label', { for: 'filter' }, 'Filter'), filter, count, ...buttons),
    // Its rows are CSS grid rows (see style.css): the roles say it is a table.
    h('table', { id: 'domains', role: 'table', 'aria-label': 'Domains' }, h('thead', { role: 'rowgroup' }, head), tbody));

  function draw() {
    const rows = sortRows(view.list, view.filter, view.sort, view.dir);
    for (const th of head.querySelectorAll('th[data-col]')) th.setAttribute('aria-sort', th.dataset.col === view.sort ? (view.dir > 0 ? 'ascending' : 'descending') : 'none');
    renderRows(tbody, rows, view.picked, view.list);
    count.textContent = `${rows.length} of ${view.list.length} domains`;
  }
  async function load() { view.list = await api('GET', '/domains?all=1'); draw(); }
  async function runBulk(verb, label, ask) {
    const names = [...view.picked].filter((n) => view.list.some((d) => d.spec.name === n));
    if (!names.length) { flash('Tick the domains to ' + label.toLowerCase() + ' first.'); return; }
    if (ask && !await confirmDialog(`${label} ${names.join(', ')}? Their guests stop at once, unsaved data is lost.`, label)) return;
    for (const n of names) await act(`${label} ${n}`, () => api('POST', `/domains/${encodeURIComponent(n)}/${verb}`, {}));
  }
  await load();
  let pending = null;
  const off = onEvent((ev) => {
    if (ev.type !== 'lifecycle' && ev.type !== 'resync') return;
    // A burst of events is one fetch, and its draw waits for a frame.
    if (!pending) pending = setTimeout(() => { pending = null; api('GET', '/domains?all=1').then((l) => { view.list = l; later(); }).catch(() => {}); }, 100);
  });
  return () => { off(); clearTimeout(pending); cancelAnimationFrame(frame); };
}

// sortRows filters and sorts the data (not the DOM): each row's key is
// read once, then compared.
export function sortRows(list, filter, sort, dir) {
  const get = cols.find((c) => c[0] === sort)[2];
  const keyed = [];
  for (const d of list) {
    if (filter && !(d.spec.name.toLowerCase().includes(filter) || String(d.state).toLowerCase().includes(filter) || (d.tenant || '').toLowerCase().includes(filter))) continue;
    keyed.push([get(d), d]);
  }
  keyed.sort((a, b) => (a[0] > b[0] ? 1 : a[0] < b[0] ? -1 : 0) * dir);
  return keyed.map((k) => k[1]);
}

// rowTemplate is one row, parsed once; every row is a clone of it.
const rowTemplate = (() => {
  const t = document.createElement('template');
  t.innerHTML = '<tr role="row"><td role="cell"><input type="checkbox"></td>' + '<td role="cell"></td>'.repeat(7).replace('></td>', '><a></a></td>') + '</tr>';
  return t.content.firstChild;
})();

// rowKey is what a row shows: a row whose key did not change is kept.
const rowKey = (d) => `${d.state}|${d.id}|${d.spec.memory_mib}|${d.spec.vcpus}|${d.tenant || ''}|${Math.round(d.uptime_sec || 0)}`;

// makeRow fills a clone of the template (text only: nothing is parsed).
function makeRow(d) {
  const tr = rowTemplate.cloneNode(true);
  const name = d.spec.name;
  const [sel, nameTd, st, id, mem, cpus, tenant, up] = tr.children;
  tr.dataset.name = name;
  sel.firstChild.setAttribute('aria-label', 'Select ' + name);
  const a = nameTd.firstChild;
  a.href = '#/domain/' + encodeURIComponent(name);
  a.textContent = name;
  st.className = 'state-' + d.state;
  st.textContent = d.state;
  id.textContent = d.id > 0 ? d.id : '–';
  mem.textContent = mib(d.spec.memory_mib);
  cpus.textContent = d.spec.vcpus;
  tenant.textContent = d.tenant || '';
  up.textContent = d.uptime_sec ? Math.round(d.uptime_sec) + ' s' : '';
  tr.rfKey = rowKey(d);
  return tr;
}

// renderRows puts the rows (of all, the whole list) in tbody in order: a
// row is built once (a template clone) and kept across draws while what
// it shows is the same;
// all of them go in with one DOM insertion, and nothing is read back
// from the layout. tbody's data-complete says every row is in. One
// listener serves every tick box.
export function renderRows(tbody, rows, picked, all = rows) {
  const cache = tbody.rfRows || (tbody.rfRows = new Map());
  const frag = document.createDocumentFragment();
  for (const d of rows) {
    const name = d.spec.name;
    let tr = cache.get(name);
    if (!tr || tr.rfKey !== rowKey(d)) { tr = makeRow(d); cache.set(name, tr); }
    tr.firstChild.firstChild.checked = picked.has(name);
    frag.append(tr);
  }
  // Rows of domains gone from the list (not those filtered out) go.
  if (cache.size > all.length) {
    const names = new Set(all.map((d) => d.spec.name));
    for (const name of cache.keys()) if (!names.has(name)) cache.delete(name);
  }
  tbody.replaceChildren(frag);
  tbody.dataset.complete = '1';
  tbody.onchange = (e) => {
    const tr = e.target.closest('tr');
    if (!tr) return;
    if (e.target.checked) picked.add(tr.dataset.name); else picked.delete(tr.dataset.name);
  };
}
