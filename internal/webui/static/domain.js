// One domain: its state (live), lifecycle buttons, graphs, consoles,
// resources, devices, snapshots, clone/export/migrate and its xl.cfg.
// A button shows only if the session's role may press it.
import { h, api, can, onEvent, act, confirmDialog, flash, mib } from './app.js';

const verbs = [ // verb, label, permission, when it applies
  ['start', 'Start', 'domain.operate', (s) => s === 'shutdown' || s === 'crashed'],
  ['shutdown', 'Shut down', 'domain.operate', (s) => s === 'running' || s === 'blocked'],
  ['reboot', 'Reboot', 'domain.operate', (s) => s === 'running' || s === 'blocked'],
  ['reset', 'Reset', 'domain.operate', (s) => s === 'running' || s === 'blocked' || s === 'paused'],
  ['pause', 'Pause', 'domain.operate', (s) => s === 'running' || s === 'blocked'],
  ['unpause', 'Unpause', 'domain.operate', (s) => s === 'paused'],
];

export async function render(main, _page, [name]) {
  const enc = encodeURIComponent(name);
  const path = '/domains/' + enc;
  let dom, gone = false;
  const stateEl = h('span', { id: 'dom-state' });
  const lifecycle = h('div', { class: 'toolbar', id: 'lifecycle' });
  const info = h('p', { class: 'muted', id: 'dom-info' });
  const graphBox = h('section', { 'aria-labelledby': 'h-graphs' });
  const cfgBox = h('pre', { class: 'cfg', id: 'xlcfg', tabindex: '0' });
  const devBox = h('div', {}), snapBox = h('div', {});
  const stops = [];

  async function refresh() {
    try { dom = await api('GET', path); }
    catch (e) { if (e.status === 404) return goneNow(); throw e; }
    stateEl.textContent = dom.state; stateEl.className = 'state-' + dom.state;
    main.dataset.state = dom.state;
    info.textContent = `ID ${dom.id > 0 ? dom.id : '–'} · ${mib(dom.spec.memory_mib)} · ${dom.spec.vcpus} vCPUs${dom.tenant ? ' · tenant ' + dom.tenant : ''}${dom.last_reason ? ' · last stop: ' + dom.last_reason : ''}`;
    lifecycle.replaceChildren(...verbs.filter(([, , perm]) => can(perm)).map(([verb, label, , ok]) =>
      h('button', { type: 'button', 'data-verb': verb, disabled: !ok(dom.state), onclick: () => post(label, verb, {}) }, label)),
    can('domain.operate') ? h('button', { type: 'button', class: 'danger', 'data-verb': 'destroy', onclick: destroy }, 'Destroy') : '');
    api('GET', path + '/config').then((t) => { cfgBox.textContent = t; }).catch(() => {});
    loadDevices(); loadSnaps();
  }
  function goneNow() {
    if (gone) return;
    gone = true;
    for (const s of stops.splice(0)) s();
    main.dataset.state = 'gone';
    const prog = document.getElementById('migrate-progress');
    main.replaceChildren(h('h1', {}, name), h('p', { role: 'alert', id: 'gone' }, `Domain ${name} does not exist, or no longer does (destroyed, migrated away or undefined). Nothing here can act on it; see the `, h('a', { href: '#/domains' }, 'domain list'), '.'),
      prog && prog.textContent ? prog : '');
  }
  async function post(label, verb, body) {
    if (gone) return;
    await act(`${label} ${name}`, () => api('POST', `${path}/${verb}`, body));
    refresh().catch(() => {});
  }
  async function destroy() {
    if (await confirmDialog(`Destroy ${name}? The guest stops at once; unsaved data in it is lost.`, 'Destroy')) post('Destroy', 'destroy', {});
  }

  function form(id, legend, perm, fields, submit) {
    if (!can(perm)) return '';
    const inputs = fields.map(([key, label, type, value]) => [key, h('input', { id: `${id}-${key}`, name: key, type: type || 'text', value: value ?? '' }), label]);
    const f = h('form', { id, class: 'toolbar' }, h('strong', {}, legend),
      inputs.map(([, input, label]) => [h('label', { for: input.id }, label), input]),
      h('button', { type: 'submit' }, legend));
    f.addEventListener('submit', (e) => { e.preventDefault(); submit(Object.fromEntries(inputs.map(([k, i]) => [k, i.value]))); });
    return f;
  }

  async function loadDevices() {
    const [blocks, vifs] = await Promise.all([api('GET', path + '/blocks').catch(() => []), api('GET', path + '/vifs').catch(() => [])]);
    const cfg = can('domain.config');
    devBox.replaceChildren(
      h('table', { id: 'blocks' }, h('caption', {}, 'Disks'), h('thead', {}, h('tr', {}, ['Device', 'Target', 'Access', ''].map((c) => h('th', { scope: 'col' }, c || h('span', { class: 'skip' }, 'Actions'))))),
        h('tbody', {}, (blocks || []).map((b) => h('tr', {}, h('td', {}, b.vdev), h('td', {}, b.target || b.path || ''), h('td', {}, b.access || ''),
          h('td', {}, cfg ? h('button', { type: 'button', onclick: () => post('Detach ' + b.vdev, 'block-detach', { vdev: b.vdev }) }, 'Detach') : ''))))),
      h('table', { id: 'vifs' }, h('caption', {}, 'Network interfaces'), h('thead', {}, h('tr', {}, ['#', 'MAC', 'Bridge', ''].map((c) => h('th', { scope: 'col' }, c || h('span', { class: 'skip' }, 'Actions'))))),
        h('tbody', {}, (vifs || []).map((v) => h('tr', {}, h('td', {}, v.index), h('td', {}, v.mac || ''), h('td', {}, v.bridge || ''),
          h('td', {}, cfg ? h('button', { type: 'button', onclick: () => post('Detach vif ' + v.index, 'network-detach', { dev: String(v.index) }) }, 'Detach') : ''))))),
      form('block-attach', 'Attach disk', 'domain.config', [['spec', 'xl disk spec']], (v) => post('Attach disk', 'block-attach', { spec: v.spec })),
      form('cd', 'Insert CD', 'domain.config', [['vdev', 'device', 'text', 'xvdc'], ['path', 'ISO file']], (v) => post('Insert CD', 'cd-insert', v)),
      form('cd-eject', 'Eject CD', 'domain.config', [['vdev', 'device', 'text', 'xvdc']], (v) => post('Eject CD', 'cd-eject', { vdev: v.vdev })),
      form('net-attach', 'Attach network', 'domain.config', [['spec', 'xl vif spec', 'text', 'bridge=xenbr0']], (v) => post('Attach network', 'network-attach', { spec: v.spec })));
  }
  async function loadSnaps() {
    const snaps = await api('GET', path + '/snapshots').catch(() => []);
    const op = can('domain.operate');
    snapBox.replaceChildren(
      h('table', { id: 'snapshots' }, h('thead', {}, h('tr', {}, ['Snapshot', 'Taken', 'Memory', ''].map((c) => h('th', { scope: 'col' }, c || h('span', { class: 'skip' }, 'Actions'))))),
        h('tbody', {}, (snaps || []).map((s) => h('tr', {}, h('td', {}, s.name), h('td', {}, new Date(s.created).toLocaleString()), h('td', {}, s.memory ? 'yes' : 'no'),
          h('td', {}, op ? [h('button', { type: 'button', onclick: () => post('Revert to ' + s.name, `snapshots/${encodeURIComponent(s.name)}/revert`, {}) }, 'Revert'),
            h('button', { type: 'button', onclick: async () => { await act('Delete snapshot ' + s.name, () => api('DELETE', `${path}/snapshots/${encodeURIComponent(s.name)}`)); loadSnaps(); } }, 'Delete')] : ''))))),
      form('snap', 'Take snapshot', 'domain.operate', [['name', 'name']], (v) => post('Snapshot', 'snapshots', { name: v.name })));
  }

  const consoleBox = h('div', { class: 'term', id: 'term', hidden: true });
  const conStatus = h('span', { class: 'muted', id: 'con-status', 'aria-live': 'polite' });
  const vncBox = h('div', { class: 'vnc', id: 'vncbox', hidden: true });
  const vncStatus = h('span', { class: 'muted', id: 'vnc-status', 'aria-live': 'polite' });
  const vncPass = h('input', { id: 'vnc-pass', type: 'password', autocomplete: 'off' });

  main.replaceChildren(
    h('h1', {}, 'Domain ', name, ' ', stateEl), info, lifecycle,
    graphBox,
    can('domain.console') ? h('section', { 'aria-labelledby': 'h-con' }, h('h2', { id: 'h-con' }, 'Serial console'),
      h('div', { class: 'toolbar' }, h('button', { type: 'button', id: 'open-console', onclick: async () => {
        consoleBox.hidden = false;
        try {
          const m = await import('./console.js');
          stops.push(m.open(consoleBox, name, (s) => { conStatus.textContent = s; }));
        } catch (e) { conStatus.textContent = 'the console could not open: ' + e.message; }
      } }, 'Open console'), conStatus), consoleBox) : '',
    h('section', { 'aria-labelledby': 'h-res' }, h('h2', { id: 'h-res' }, 'Resources'),
      form('mem-set', 'Set memory', 'domain.config', [['mib', 'MiB', 'number']], (v) => post('Set memory', 'mem-set', { memory_mib: Number(v.mib) })),
      form('vcpu-set', 'Set vCPUs', 'domain.config', [['n', 'vCPUs', 'number']], (v) => post('Set vCPUs', 'vcpu-set', { vcpus: Number(v.n) })),
      form('sched', 'Set credit', 'domain.config', [['weight', 'weight', 'number', '-1'], ['cap', 'cap', 'number', '-1']], (v) => post('Scheduler credit', 'sched-credit', { weight: Number(v.weight), cap: Number(v.cap) })),
      form('pin', 'Pin vCPU', 'domain.config', [['vcpu', 'vCPU (-1: all)', 'number', '-1'], ['cpus', 'host CPUs']], (v) => post('Pin vCPUs', 'vcpu-pin', { vcpu: Number(v.vcpu), cpus: v.cpus }))),
    h('section', { 'aria-labelledby': 'h-dev' }, h('h2', { id: 'h-dev' }, 'Devices'), devBox),
    h('section', { 'aria-labelledby': 'h-snap' }, h('h2', { id: 'h-snap' }, 'Snapshots'), snapBox),
    h('section', { 'aria-labelledby': 'h-move' }, h('h2', { id: 'h-move' }, 'Clone, export, migrate'),
      form('clone', 'Clone', 'domain.create', [['name', 'new name']], (v) => post('Clone', 'clone', { name: v.name })),
      form('export', 'Export', 'domain.operate', [['path', 'archive path on the host']], (v) => post('Export', 'export', { path: v.path })),
      form('migrate', 'Migrate', 'domain.migrate', [['target', 'peer host:port']], (v) => post('Migrate', 'migrate', { target: v.target })),
      h('p', { id: 'migrate-progress', 'aria-live': 'polite', class: 'muted' })),
    h('section', { 'aria-labelledby': 'h-cfg' }, h('h2', { id: 'h-cfg' }, 'xl.cfg'), cfgBox));

  // The VNC console, for a domain with a display.
  await refresh();
  if (gone || !main.contains(lifecycle)) return; // left meanwhile
  if (dom.spec.vnc && can('domain.console')) {
    main.insertBefore(h('section', { 'aria-labelledby': 'h-vnc' }, h('h2', { id: 'h-vnc' }, 'Display (VNC)'),
      h('div', { class: 'toolbar' }, h('label', { for: 'vnc-pass' }, 'VNC password'), vncPass,
        h('button', { type: 'button', id: 'open-vnc', onclick: async () => {
          vncBox.hidden = false;
          try {
            const m = await import('./vnc.js');
            stops.push(m.open(vncBox, name, vncPass.value, (s) => { vncStatus.textContent = s; }));
          } catch (e) { vncStatus.textContent = 'the display could not open: ' + e.message; }
        } }, 'Open display'), vncStatus), vncBox), main.children[4]);
  }
  graphBox.append(h('h2', { id: 'h-graphs' }, 'Graphs'));
  const gdiv = h('div', {});
  graphBox.append(gdiv);
  stops.push((await import('./graphs.js')).mount(gdiv, name));

  // A migration's progress stays shown once the domain has left.
  const progress = document.getElementById('migrate-progress');
  const offProgress = onEvent((ev) => {
    if (ev.domain === name && ev.type === 'operation' && /^migrate /.test(ev.detail || '')) progress.textContent = `${ev.action}: ${ev.detail}`;
  });
  stops.push(onEvent((ev) => {
    if (ev.type === 'resync') { refresh().catch(() => {}); return; }
    if (ev.domain !== name) return;
    if (ev.type === 'lifecycle' && (ev.action === 'destroyed' || ev.action === 'undefined' || ev.action === 'migrated' || ev.action === 'renamed')) {
      api('GET', path).then(() => refresh()).catch((e) => { if (e.status === 404) goneNow(); });
      return;
    }
    refresh().catch((e) => flash(e.message));
  }));
  return () => { offProgress(); for (const s of stops.splice(0)) s(); };
}
