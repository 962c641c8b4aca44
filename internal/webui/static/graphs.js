// Live graphs of a domain from the daemon's history (GET .../history):
// 1 s points over 10 minutes, or 1 min points over 24 hours.
import { h, api, rate } from './app.js';

const series = [
  ['cpu', 'CPU %', (p) => p.cpu_pct, (v) => v.toFixed(1) + ' %'],
  ['steal', 'Steal %', (p) => p.steal_pct, (v) => v.toFixed(1) + ' %'],
  ['mem', 'Memory', (p) => p.mem_mib, (v) => Math.round(v) + ' MiB'],
  ['disk', 'Disk read + write', (p) => p.disk_rd_bps + p.disk_wr_bps, rate],
  ['net', 'Network rx + tx', (p) => p.net_rx_bps + p.net_tx_bps, rate],
];

// mount draws the graphs into box and keeps them live; it returns a stop
// function.
export function mount(box, name) {
  let span = 'fine', pts = [], last = 0, timer = null, stopped = false;
  const figs = Object.fromEntries(series.map(([key, label]) => {
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('viewBox', '0 0 300 90'); svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('role', 'img'); svg.setAttribute('aria-label', label);
    const now = h('span', { class: 'muted', 'data-now': key });
    return [key, { svg, now, fig: h('figure', { class: 'graph', 'data-graph': key }, h('figcaption', {}, label + ' ', now), svg) }];
  }));
  const pick = h('select', { id: 'span', onchange: () => { span = pick.value; pts = []; last = 0; tick(); } },
    h('option', { value: 'fine' }, 'last 10 minutes (1 s)'), h('option', { value: 'coarse' }, 'last 24 hours (1 min)'));
  box.replaceChildren(h('div', { class: 'toolbar' }, h('label', { for: 'span' }, 'Range'), pick),
    h('div', { class: 'graphs' }, Object.values(figs).map((f) => f.fig)));

  async function tick() {
    clearTimeout(timer);
    try {
      const hist = await api('GET', `/domains/${encodeURIComponent(name)}/history?since=${last}`);
      const fresh = hist[span];
      if (fresh.length) { pts = pts.concat(fresh).slice(span === 'fine' ? -600 : -1440); last = pts[pts.length - 1].t; }
      draw();
    } catch (e) { if (e.status === 404) stopped = true; }
    // The graphs are the only thing a page asks for on a timer, and only
    // while it shows them: the history's new points since the last.
    if (!stopped) timer = setTimeout(tick, span === 'fine' ? 2000 : 60000);
  }
  function draw() {
    for (const [key, , val, fmt] of series) {
      const f = figs[key], vs = pts.map(val);
      const maxV = Math.max(1, ...vs) * 1.1;
      const n = Math.max(vs.length - 1, 1);
      const d = vs.map((v, i) => `${i ? 'L' : 'M'}${(300 * i / n).toFixed(1)},${(88 - 86 * v / maxV).toFixed(1)}`).join('');
      f.svg.replaceChildren(Object.assign(document.createElementNS('http://www.w3.org/2000/svg', 'path'), {}));
      const path = f.svg.firstChild;
      path.setAttribute('d', d || 'M0,88'); path.setAttribute('fill', 'none'); path.setAttribute('stroke', '#0b5cad'); path.setAttribute('stroke-width', '1.5');
      f.now.textContent = vs.length ? fmt(vs[vs.length - 1]) : 'no samples yet';
      f.fig.dataset.last = vs.length ? String(vs[vs.length - 1]) : '';
      f.fig.dataset.points = String(vs.length);
    }
  }
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}
