// Create a domain from an xl.cfg pasted or uploaded (checked live by the
// daemon with the same diagnostics as `config check`), or from a form
// that writes the xl.cfg it creates and shows it.
import { h, api, act, flash, onEvent } from './app.js';

export async function render(main) {
  const text = h('textarea', { id: 'cfg', spellcheck: 'false', 'aria-describedby': 'diags' });
  const file = h('input', { id: 'cfg-file', type: 'file', accept: '.cfg,.conf,text/plain' });
  const diags = h('div', { id: 'diags', 'aria-live': 'polite' });
  const summary = h('ul', { id: 'summary', class: 'muted' });
  const createBtn = h('button', { type: 'button', class: 'primary', id: 'create', disabled: true, onclick: create }, 'Create');
  let fname = 'domain.cfg', last = null, timer = null;

  async function check() {
    const out = await api('POST', '/config/check', { file: fname, text: text.value });
    last = out;
    text.setAttribute('aria-invalid', out.ok ? 'false' : 'true');
    diags.replaceChildren(...out.diagnostics.map((d) => h('p', { class: 'diag ' + d.severity },
      h('a', { href: '#', onclick: (e) => { e.preventDefault(); goTo(d.line, d.col); } }, `${d.file}:${d.line || 0}:${d.col || 0}`), `: ${d.severity}: ${d.message}`)));
    if (out.ok && !out.diagnostics.length) diags.replaceChildren(h('p', { class: 'diag ok' }, `${out.file}: ok`));
    summary.replaceChildren(...(out.summary || []).map((l) => h('li', {}, l)));
    createBtn.disabled = !out.ok;
    main.dataset.checked = out.ok ? 'ok' : 'errors';
  }
  // goTo puts the cursor at line:col of the file, where the diagnostic is.
  function goTo(line, col) {
    const lines = text.value.split('\n');
    let pos = 0;
    for (let i = 0; i < Math.min(line - 1, lines.length); i++) pos += lines[i].length + 1;
    pos += Math.max(0, (col || 1) - 1);
    text.focus(); text.setSelectionRange(pos, pos + 1);
  }
  function later() { clearTimeout(timer); timer = setTimeout(() => check().catch((e) => flash(e.message)), 250); }
  async function create() {
    await check();
    if (!last || !last.ok) { flash('The file has errors: fix them first (nothing was created).'); return; }
    const name = last.spec.name;
    // The create is an operation: the event stream says when it ends
    // (its page then follows the domain itself).
    let op = null;
    const seen = [];
    const off = onEvent((ev) => {
      if (ev.type !== 'operation') return;
      if (!op) { seen.push(ev); return; }
      ended(ev);
    });
    const ended = (ev) => {
      if (!(ev.detail || '').startsWith('create ' + op.id)) return;
      if (ev.action === 'success') { off(); location.hash = '#/domain/' + encodeURIComponent(name); }
      else if (ev.action !== 'started' && ev.action !== 'progress') { off(); flash(`Create ${name} failed: ${ev.detail}`); createBtn.disabled = false; }
    };
    createBtn.disabled = true;
    op = await act('Create ' + name, () => api('POST', '/domains', { spec: last.spec }));
    if (!op) { off(); createBtn.disabled = false; return; }
    flash(`Creating ${name}…`, true);
    seen.forEach(ended);
    leave = off;
  }
  let leave = null;
  text.addEventListener('input', later);
  file.addEventListener('change', async () => {
    const f = file.files[0];
    if (!f) return;
    if (f.size > 1 << 20) { flash(`${f.name} is over 1 MiB: not a domain file`); return; }
    fname = f.name; text.value = await f.text(); later();
  });

  const fields = [['name', 'Name', 'web1'], ['memory', 'Memory (MiB)', '256'], ['vcpus', 'vCPUs', '1'], ['kernel', 'Kernel', ''], ['ramdisk', 'Initrd', ''],
    ['extra', 'Kernel command line', 'console=hvc0'], ['disk', 'Disk (xl disk spec)', ''], ['vif', 'Network (xl vif spec)', '']];
  const inputs = Object.fromEntries(fields.map(([k, , v]) => [k, h('input', { id: 'f-' + k, value: v })]));
  const formEl = h('form', { id: 'create-form' }, h('h2', {}, 'Or fill in a form'),
    fields.map(([k, label]) => h('div', {}, h('label', { for: 'f-' + k }, label), inputs[k])),
    h('button', { type: 'submit' }, 'Write the xl.cfg'));
  formEl.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = (s) => '"' + s.replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"';
    const v = Object.fromEntries(Object.entries(inputs).map(([k, i]) => [k, i.value.trim()]));
    const lines = [`name = ${q(v.name)}`, `memory = ${Number(v.memory) || 0}`, `vcpus = ${Number(v.vcpus) || 0}`];
    if (v.kernel) lines.push(`kernel = ${q(v.kernel)}`);
    if (v.ramdisk) lines.push(`ramdisk = ${q(v.ramdisk)}`);
    if (v.extra) lines.push(`extra = ${q(v.extra)}`);
    if (v.disk) lines.push(`disk = [ ${q(v.disk)} ]`);
    if (v.vif) lines.push(`vif = [ ${q(v.vif)} ]`);
    fname = v.name + '.cfg'; text.value = lines.join('\n') + '\n'; check().catch((err) => flash(err.message));
    text.focus();
  });
  main.replaceChildren(h('h1', {}, 'Create a domain'),
    h('div', { class: 'toolbar' }, h('label', { for: 'cfg-file' }, 'Upload an xl.cfg'), file),
    h('label', { for: 'cfg' }, 'xl.cfg (checked as you type, as config check does)'), text, diags, summary,
    h('div', { class: 'toolbar' }, createBtn), formEl);
  return () => { if (leave) leave(); };
}
