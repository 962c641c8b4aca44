// The host's other objects: networks, pools and volumes, host info and
// trust, tokens and tenants (admin). Each page is a table read from
// the API, and the forms its role may use.
import { h, api, can, act, confirmDialog, mib, when } from './app.js';

function table(id, cols, rows, caption) {
  if (!rows || !rows.length) return h('p', { class: 'muted', id }, 'None.');
  return h('table', { id }, caption ? h('caption', {}, caption) : '',
    h('thead', {}, h('tr', {}, cols.map(([label]) => h('th', { scope: 'col' }, label || h('span', { class: 'skip' }, 'Actions'))))),
    h('tbody', {}, rows.map((r) => h('tr', {}, cols.map(([, get]) => h('td', {}, get(r)))))));
}

function form(id, legend, fields, submit) {
  const inputs = fields.map(([key, label, type, extra]) => {
    const input = type === 'select' ? h('select', { id: `${id}-${key}` }, extra.map((o) => h('option', { value: o }, o)))
      : h('input', { id: `${id}-${key}`, type: type || 'text' });
    return [key, input, label];
  });
  const f = h('form', { id, class: 'toolbar' }, h('strong', {}, legend),
    inputs.map(([, input, label]) => [h('label', { for: input.id }, label), input]), h('button', { type: 'submit' }, legend));
  f.addEventListener('submit', (e) => { e.preventDefault(); submit(Object.fromEntries(inputs.map(([k, i]) => [k, i.value.trim()]))); });
  return f;
}

// sizeBytes reads 512M, 10G, 1T (binary units; bare: bytes); NaN is sent
// as 0 for the daemon to refuse with its own message.
function sizeBytes(s) {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$/i.exec(s.trim());
  if (!m) return 0;
  return Math.round(Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase()));
}

const pages = {
  async networks(main, again) {
    const nets = await api('GET', '/networks');
    main.append(table('networks', [['Name', (n) => n.name], ['Bridge', (n) => n.bridge], ['Subnet', (n) => n.subnet || ''], ['NAT', (n) => n.nat ? 'yes' : 'no'], ['Tenant', (n) => n.tenant || ''],
      ['', (n) => can('network.manage') ? h('button', { type: 'button', onclick: async () => { if (await confirmDialog(`Delete network ${n.name}?`, 'Delete')) { await act('Delete ' + n.name, () => api('DELETE', '/networks/' + encodeURIComponent(n.name))); again(); } } }, 'Delete') : '']], nets));
  },
  async storage(main, again) {
    const pools = await api('GET', '/pools');
    main.append(table('pools', [['Pool', (p) => p.name], ['Directory', (p) => p.dir], ['Tenant', (p) => p.tenant || (p.shared ? 'shared' : '')]], pools, 'Pools'));
    for (const p of pools) {
      const vols = await api('GET', `/pools/${encodeURIComponent(p.name)}/volumes`).catch(() => []);
      main.append(h('h2', {}, 'Volumes in ' + p.name), table('vols-' + p.name, [['Volume', (v) => v.name], ['Format', (v) => v.format], ['Size', (v) => mib(v.virtual_bytes / 1048576)], ['Used', (v) => mib(v.allocated_bytes / 1048576)]], vols));
      if (can('storage.manage')) main.append(form('vol-' + p.name, 'Create volume', [['name', 'name'], ['size', 'size (e.g. 1G)']], async (v) => { await act('Create volume ' + v.name, () => api('POST', `/pools/${encodeURIComponent(p.name)}/volumes`, { name: v.name, size_bytes: sizeBytes(v.size) })); again(); }));
    }
  },
  async host(main) {
    const info = await api('GET', '/host');
    main.append(h('dl', { id: 'hostinfo' }, [['Host', info.hostname], ['CPUs', info.cpus], ['Memory', mib(info.mem_total_mib)], ['Acceleration', `${info.accel} (${info.accel_reason})`],
      ['QEMU', `${info.qemu_version} ${info.qemu_binary}`], ['Ringfence', info.ringfence_version], ['Cgroups', `v${info.cgroup_version} ${info.cgroup_base || ''}`],
      ['Peer trust', info.peer ? `${info.peer.role} ${info.peer.name}, certificate until ${new Date(info.peer.not_after).toLocaleDateString()}` : 'none (ringfence host trust)']]
      .map(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))])));
    if (info.warnings) main.append(h('h2', {}, 'Warnings'), h('ul', {}, info.warnings.map((w) => h('li', {}, w))));
    const peers = await api('GET', '/host/peers').catch(() => null);
    if (peers) main.append(h('h2', {}, 'Trusted peers'), h('pre', { class: 'cfg', tabindex: '0' }, JSON.stringify(peers, null, 2)));
  },
  async tokens(main, again) {
    const toks = await api('GET', '/tokens');
    main.append(table('tokens', [['Token', (t) => t.name], ['Role', (t) => t.role], ['Tenant', (t) => t.tenant || ''], ['Created', (t) => when(t.created)], ['Last used', (t) => when(t.last_used)],
      ['Revoked', (t) => t.revoked ? when(t.revoked) : ''],
      ['', (t) => t.revoked ? '' : h('button', { type: 'button', class: 'danger', onclick: async () => { if (await confirmDialog(`Revoke token ${t.name}? Its holders (and their sessions) are refused from now on.`, 'Revoke')) { await act('Revoke ' + t.name, () => api('DELETE', '/tokens/' + encodeURIComponent(t.name))); again(); } } }, 'Revoke')]], toks));
    const secret = h('p', { id: 'new-secret', 'aria-live': 'polite' });
    main.append(form('token-create', 'Create token', [['name', 'name'], ['role', 'role', 'select', ['operator', 'auditor', 'admin', 'tenant-admin', 'tenant-user']], ['tenant', 'tenant (tenant roles)']], async (v) => {
      const out = await act('Create token ' + v.name, () => api('POST', '/tokens', { name: v.name, role: v.role, tenant: v.tenant }));
      if (out) { await again(); document.getElementById('main').firstChild.append(h('p', { id: 'new-secret' }, 'Secret (shown once): ', h('code', {}, out.secret))); }
    }), secret);
  },
  async tenants(main, again) {
    const ts = await api('GET', '/tenants');
    main.append(table('tenants', [['Tenant', (t) => t.name], ['Memory', (t) => `${mib(t.usage.memory_mib)} of ${mib(t.quota.memory_mib)}`], ['vCPUs', (t) => `${t.usage.vcpus} of ${t.quota.vcpus}`],
      ['Domains', (t) => (t.usage.domains || []).join(', ')],
      ['', (t) => can('tenant.manage') ? h('button', { type: 'button', class: 'danger', onclick: async () => { if (await confirmDialog(`Delete tenant ${t.name}?`, 'Delete')) { await act('Delete tenant ' + t.name, () => api('DELETE', '/tenants/' + encodeURIComponent(t.name))); again(); } } }, 'Delete') : '']], ts));
    if (can('tenant.manage')) main.append(form('tenant-create', 'Create tenant', [['name', 'name'], ['memory', 'memory MiB', 'number'], ['vcpus', 'vCPUs', 'number']], async (v) => {
      await act('Create tenant ' + v.name, () => api('POST', '/tenants', { name: v.name, quota: { memory_mib: Number(v.memory), vcpus: Number(v.vcpus) } })); again();
    }));
  },
};

const titles = { networks: 'Networks', storage: 'Pools and volumes', host: 'Host', tokens: 'API tokens', tenants: 'Tenants' };

export async function render(main, page) {
  // Each draw goes into a box of its own: one that was replaced meanwhile
  // (a sign-out, another page) takes what a late answer adds, unseen.
  const again = async () => {
    const box = h('div', {}, h('h1', {}, titles[page]));
    main.replaceChildren(box);
    await pages[page](box, again);
  };
  await again();
}
