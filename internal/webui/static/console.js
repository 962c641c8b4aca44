// The serial console: xterm.js over the console WebSocket. Loaded only
// when opened. A paste is sent as keystrokes (what xterm's onData gives).
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';

export function open(box, name, status) {
  if (!document.querySelector('link[data-xterm]')) {
    document.head.append(Object.assign(document.createElement('link'), { rel: 'stylesheet', href: '/ui/vendor/xterm/xterm.css' }));
    document.head.lastChild.dataset.xterm = '1';
  }
  const term = new Terminal({ convertEol: false, scrollback: 5000, fontSize: 14 });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${proto}//${location.host}/1.0/domains/${encodeURIComponent(name)}/console`, ['ringfence']);
  ws.binaryType = 'arraybuffer';
  const enc = new TextEncoder();
  ws.onopen = () => { status('connected'); term.focus(); };
  ws.onmessage = (m) => term.write(typeof m.data === 'string' ? m.data : new Uint8Array(m.data));
  ws.onclose = (e) => status('closed' + (e.reason ? ': ' + e.reason : ''));
  term.onData((d) => { if (ws.readyState === WebSocket.OPEN) ws.send(enc.encode(d)); });
  window.__rfTerm = term; // the browser tests read the screen from here
  return () => { ws.close(); term.dispose(); };
}
