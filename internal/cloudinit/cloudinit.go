// Package cloudinit writes cloud-init NoCloud seeds: meta-data,
// user-data and network-config on an ISO 9660 volume labelled cidata
// (made with genisoimage, as Debian's cloud-localds does), which
// cloud-init finds on any block device of the guest. The files are YAML
// in flow style (JSON), which cloud-init's YAML loader reads, so no
// YAML library is needed and every value is quoted.
package cloudinit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Settings is what a seed says.
type Settings struct {
	Hostname     string
	SSHKeys      []string
	PasswordHash string // root's, crypt(3); "" = no password (keys only)
	UserData     string // passed through beside ours
	NICs         []NIC
}

// NIC is one guest interface, matched by MAC: a static address when
// Address is set (CIDR form), else DHCP.
type NIC struct {
	MAC     string
	Address string // 10.77.0.10/24
	Gateway string
	DNS     []string
}

// Files are a seed's three files.
type Files struct {
	MetaData, UserData, NetworkConfig []byte
}

// InstanceID names the configuration: a new one makes cloud-init apply
// its per-instance modules again (as Proxmox does when a VM's cloud-init
// settings change), the same one leaves a booted guest alone.
func (s Settings) InstanceID() string {
	b, _ := json.Marshal(s)
	h := sha256.Sum256(b)
	return "rf-" + hex.EncodeToString(h[:8])
}

// Render makes the seed's files.
func Render(s Settings) (Files, error) {
	meta := map[string]any{"instance-id": s.InstanceID(), "local-hostname": s.Hostname}
	mb, _ := json.Marshal(meta)
	cfg := map[string]any{
		"hostname": s.Hostname, "preserve_hostname": false, "manage_etc_hosts": true,
		// Root logs in with the keys (as on a provider's VPS); the
		// default user is made too, with the same keys.
		"disable_root": false, "ssh_authorized_keys": nonNil(s.SSHKeys),
		"ssh_pwauth": false,
	}
	if s.PasswordHash != "" {
		cfg["chpasswd"] = map[string]any{"expire": false,
			"users": []map[string]string{{"name": "root", "password": s.PasswordHash, "type": "hash"}}}
	}
	cb, _ := json.Marshal(cfg)
	ours := "#cloud-config\n" + string(cb) + "\n"
	user := []byte(ours)
	if strings.TrimSpace(s.UserData) != "" {
		var err error
		if user, err = multipartUserData(ours, s.UserData); err != nil {
			return Files{}, err
		}
	}
	nb, err := networkConfig(s.NICs)
	if err != nil {
		return Files{}, err
	}
	return Files{MetaData: append(mb, '\n'), UserData: user, NetworkConfig: nb}, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// networkConfig is version 2 (netplan-style) network configuration.
func networkConfig(nics []NIC) ([]byte, error) {
	eths := map[string]any{}
	for i, n := range nics {
		e := map[string]any{"match": map[string]string{"macaddress": strings.ToLower(n.MAC)}}
		if n.Address == "" {
			e["dhcp4"] = true
		} else {
			e["addresses"] = []string{n.Address}
			if n.Gateway != "" {
				e["routes"] = []map[string]string{{"to": "0.0.0.0/0", "via": n.Gateway}}
			}
			if len(n.DNS) > 0 {
				e["nameservers"] = map[string]any{"addresses": n.DNS}
			}
		}
		eths[fmt.Sprintf("nic%d", i)] = e
	}
	b, err := json.Marshal(map[string]any{"version": 2, "ethernets": eths})
	return append(b, '\n'), err
}

// multipartUserData combines our cloud-config with the user's part, as
// cloud-init's MIME multipart user-data (both cloud-configs are merged;
// a script part runs at first boot).
func multipartUserData(ours, theirs string) ([]byte, error) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	fmt.Fprintf(&buf, "Content-Type: multipart/mixed; boundary=%q\nMIME-Version: 1.0\n\n", w.Boundary())
	for _, part := range []string{ours, theirs} {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", partType(part)+"; charset=\"utf-8\"")
		h.Set("MIME-Version", "1.0")
		pw, err := w.CreatePart(h)
		if err != nil {
			return nil, err
		}
		pw.Write([]byte(part))
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// partType is the MIME type cloud-init gives a user-data part by its
// first line.
func partType(s string) string {
	switch {
	case strings.HasPrefix(s, "#cloud-config"):
		return "text/cloud-config"
	case strings.HasPrefix(s, "#!"):
		return "text/x-shellscript"
	case strings.HasPrefix(s, "#cloud-boothook"):
		return "text/cloud-boothook"
	case strings.HasPrefix(s, "#include"):
		return "text/x-include-url"
	}
	return "text/plain"
}

// CheckUserData refuses user-data cloud-init would ignore.
func CheckUserData(s string) error {
	if strings.TrimSpace(s) == "" || partType(s) != "text/plain" {
		return nil
	}
	return fmt.Errorf("user-data must start with #cloud-config, #! (a script), #cloud-boothook or #include, as cloud-init reads it")
}

// Write makes the seed image at path (replacing one there): the files in
// a scratch directory beside it, genisoimage into path.tmp, renamed.
func Write(ctx context.Context, path string, f Files) error {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".seed-")
	if err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	defer os.RemoveAll(dir)
	for name, b := range map[string][]byte{"meta-data": f.MetaData, "user-data": f.UserData, "network-config": f.NetworkConfig} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	tmp := path + ".tmp"
	cmd := exec.CommandContext(ctx, "genisoimage", "-quiet", "-output", tmp, "-volid", "cidata", "-joliet", "-rock",
		filepath.Join(dir, "meta-data"), filepath.Join(dir, "user-data"), filepath.Join(dir, "network-config"))
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		if _, lerr := exec.LookPath("genisoimage"); lerr != nil {
			return fmt.Errorf("cloud-init seed: genisoimage not found: apt-get install genisoimage (make deps)")
		}
		return fmt.Errorf("cloud-init seed: genisoimage: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
