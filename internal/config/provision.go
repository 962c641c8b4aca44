package config

// Ringfence's provisioning keys (docs/xl-mapping.md, "OS images"): a
// domain made from an OS image and configured by cloud-init at first
// boot. image= turns it on; the others need it.

import (
	"fmt"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/names"
	"github.com/ringfence/ringfence/internal/spec"
)

// provisionKeys are added to keys (init: keys is a literal).
var provisionKeys = map[string]keyRule{
	"image": {"Ringfence: the OS image (`image build`) the first disk is thin-cloned from; cloud-init configures it", func(d *decoder, v Value) error {
		return str(v, &d.prov().Image, func(s string) error { return names.Check("image", s) })
	}},
	"image_pool": {"Ringfence: the pool of image= (when several have one of that name)", func(d *decoder, v Value) error {
		return str(v, &d.prov().ImagePool, func(s string) error { return names.Check("pool", s) })
	}},
	"disk_size": {"Ringfence: the image clone's size (10G; at least the image's); the guest grows its root at first boot", func(d *decoder, v Value) error {
		var s string
		if err := str(v, &s, spec.SafeText); err != nil {
			return err
		}
		n, err := spec.ParseSize(s)
		if err != nil {
			return fmt.Errorf("disk_size %q: want a size like 10G", s)
		}
		d.prov().DiskSizeB = n
		return nil
	}},
	"hostname": {"Ringfence: the guest's host name set by cloud-init (default: name)", func(d *decoder, v Value) error {
		return str(v, &d.prov().Hostname, validHostname)
	}},
	"ssh_authorized_keys": {"Ringfence: OpenSSH public keys for root (and the image's default user)", decodeSSHKeys},
	"root_password_hash": {"Ringfence: root's password as crypt(3) (mkpasswd -m sha-512)", func(d *decoder, v Value) error {
		return str(v, &d.prov().PasswordHash, validPasswordHash)
	}},
	"guest_agent": {"Ringfence: 1 = a virtio-serial port for the QEMU guest agent (on with image=)", func(d *decoder, v Value) error {
		var n int
		err := d.num(v, &n, switchRange)
		d.spec.GuestAgent = n == 1
		return err
	}},
	"user_data": {"Ringfence: cloud-init user-data passed through (#cloud-config or a #! script)", func(d *decoder, v Value) error {
		return str(v, &d.prov().UserData, func(string) error { return nil })
	}},
}

func init() {
	for k, r := range provisionKeys {
		keys[k] = r
	}
}

// prov is the spec's provisioning settings, made on first use.
func (d *decoder) prov() *api.Provision {
	if d.spec.Provision == nil {
		d.spec.Provision = &api.Provision{}
	}
	return d.spec.Provision
}

func decodeSSHKeys(d *decoder, v Value) error {
	items, err := d.specList("ssh_authorized_keys", v)
	if err != nil {
		return err
	}
	d.prov().SSHKeys = nil
	for _, it := range items {
		if err := ValidSSHKey(it.Str); err != nil {
			d.errorf(it.Pos, "ssh_authorized_keys: %v", err)
			continue
		}
		d.prov().SSHKeys = append(d.prov().SSHKeys, strings.TrimSpace(it.Str))
	}
	return nil
}

// ValidSSHKey checks one OpenSSH public key line (type, base64, comment).
func ValidSSHKey(s string) error {
	f := strings.Fields(s)
	if len(f) < 2 || strings.ContainsAny(s, "\n\r") || !(strings.HasPrefix(f[0], "ssh-") || strings.HasPrefix(f[0], "ecdsa-") || strings.HasPrefix(f[0], "sk-")) {
		return fmt.Errorf("%.40q is not an OpenSSH public key line (ssh-ed25519 AAAA... comment): give the .pub file's line", s)
	}
	return nil
}

func validHostname(s string) error {
	if len(s) == 0 || len(s) > 63 {
		return fmt.Errorf("hostname %q: 1 to 63 characters", s)
	}
	for i, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' && i > 0) {
			return fmt.Errorf("hostname %q: letters, digits and - (not first) only", s)
		}
	}
	return nil
}

func validPasswordHash(s string) error {
	if s == api.HiddenPassword {
		return nil // config export's stand-in: config update keeps the hash
	}
	if !strings.HasPrefix(s, "$") || strings.ContainsAny(s, " \t\n:") {
		return fmt.Errorf("root_password_hash must be a crypt(3) hash ($6$... or $y$..., from mkpasswd), never the password itself")
	}
	return nil
}

// finishProvision refuses provisioning keys without image=.
func (d *decoder) finishProvision() {
	if p := d.spec.Provision; p != nil && p.Image == "" {
		d.errorf(Pos{}, "image=, disk_size=, hostname=, ssh_authorized_keys=, root_password_hash= and user_data= configure a domain made from an OS image: add image = 'debian-12' (ringfence image list)")
	}
}

// formatProvision writes the provisioning keys back.
func formatProvision(w *cfgWriter, s api.DomainSpec) {
	if s.GuestAgent {
		w.kv("guest_agent", "1")
	}
	p := s.Provision
	if p == nil {
		return
	}
	w.kv("image", quote(p.Image))
	if p.ImagePool != "" {
		w.kv("image_pool", quote(p.ImagePool))
	}
	if p.DiskSizeB > 0 {
		w.kv("disk_size", quote(fmt.Sprintf("%dM", p.DiskSizeB>>20)))
	}
	if p.Hostname != "" {
		w.kv("hostname", quote(p.Hostname))
	}
	if len(p.SSHKeys) > 0 {
		w.list("ssh_authorized_keys", p.SSHKeys)
	}
	if p.PasswordHash != "" {
		w.kv("root_password_hash", quote(p.PasswordHash))
	}
	if p.UserData != "" {
		w.kv("user_data", quote(p.UserData))
	}
}
