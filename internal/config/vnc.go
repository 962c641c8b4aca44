package config

import (
	"fmt"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/spec"
)

// xl's VNC settings. vnc and vncpasswd are honoured (the display and its
// RFB password). The others place or open a VNC port on the host, which
// ringfence never does (QEMU's VNC server listens on a unix socket the
// daemon proxies): they are accepted and reported together, in one
// warning that says where the display is instead.

// vncHostKeys are the settings about a host port, in the order named.
var vncHostKeys = []string{"vnclisten", "vncdisplay", "vncunused", "vncconsole"}

// vncNotes collects what finishVNC reports: the host-port keys the file
// set, and where the first of them (or vncpasswd) was.
type vncNotes struct {
	unplaced []string
	pos      Pos
	passPos  Pos
}

func decodeVNC(d *decoder, v Value) error {
	var n int
	err := d.num(v, &n, switchRange)
	d.spec.VNC = n == 1
	return err
}

func decodeVNCPassword(d *decoder, v Value) error {
	d.vnc.passPos = v.Pos
	return str(v, &d.spec.VNCPassword, spec.ValidVNCPassword)
}

// vncHostKey notes a host-port key for finishVNC (any value: none is used).
func vncHostKey(key string) keyRule {
	return keyRule{"xl's VNC host port: none is opened; `ringfence vnc NAME` reaches the display", func(d *decoder, v Value) error {
		if len(d.vnc.unplaced) == 0 {
			d.vnc.pos = v.Pos
		}
		d.vnc.unplaced = append(d.vnc.unplaced, key)
		return nil
	}}
}

// finishVNC reports the VNC settings that cannot be honoured as xl does,
// in one warning: the host-port keys, and a password with no display (it
// is dropped: nothing would use it).
func (d *decoder) finishVNC() {
	keys, pos := d.vnc.unplaced, d.vnc.pos
	if !d.spec.VNC && d.spec.VNCPassword != "" {
		if len(keys) == 0 {
			pos = d.vnc.passPos
		}
		keys = append(keys, "vncpasswd")
		d.spec.VNCPassword = ""
	}
	if len(keys) == 0 {
		return
	}
	name := d.spec.Name
	if name == "" {
		name = "NAME"
	}
	reach := fmt.Sprintf("`ringfence vnc %s` (a local tunnel) or the API (/1.0/domains/%s/vnc)", name, name)
	why := "ringfence opens no VNC port on the host; the display is reached through " + reach
	if !d.spec.VNC {
		why = "vnc is off (vnc = 1 turns the display on, reached through " + reach + ")"
	}
	quoted := make([]string, len(keys))
	for i, k := range keys {
		quoted[i] = fmt.Sprintf("%q", k)
	}
	verb := "are"
	if len(keys) == 1 {
		verb = "is"
	}
	d.warn(pos, keys[0], "%s %s ignored: %s", strings.Join(quoted, ", "), verb, why)
}

// formatVNC writes the display settings back.
func formatVNC(w *cfgWriter, s api.DomainSpec) {
	if !s.VNC {
		return
	}
	w.kv("vnc", "1")
	if s.VNCPassword != "" {
		w.kv("vncpasswd", quote(s.VNCPassword))
	}
}

// vncSummary is the display's line of Summary.
func vncSummary(s api.DomainSpec) string {
	pw := "no password (the API token guards it)"
	if s.VNCPassword != "" {
		pw = "RFB password"
	}
	return fmt.Sprintf("  display: VGA, VNC on a unix socket (no host port), %s; `ringfence vnc %s`", pw, s.Name)
}
