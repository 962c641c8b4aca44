// The graphical console: noVNC over the VNC WebSocket. Loaded only when
// opened.
import RFB from '@novnc/novnc/rfb';

export function open(box, name, password, status) {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const rfb = new RFB(box, `${proto}//${location.host}/1.0/domains/${encodeURIComponent(name)}/vnc`, { credentials: { password } });
  rfb.scaleViewport = true;
  rfb.addEventListener('connect', () => status('connected'));
  // A refusal is followed by a disconnect: the refusal stays said.
  let refused = false;
  rfb.addEventListener('disconnect', (e) => { if (!refused) status(e.detail.clean ? 'closed' : 'connection lost'); });
  rfb.addEventListener('credentialsrequired', () => status('the display wants its password (the file\'s vncpasswd)'));
  rfb.addEventListener('securityfailure', (e) => { refused = true; status('refused: ' + ((e.detail.reason || '').replace(/[\x00-\x1f]/g, '').trim() || 'wrong password')); });
  return () => rfb.disconnect();
}
