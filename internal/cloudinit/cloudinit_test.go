package cloudinit

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	base := Settings{Hostname: "web01", SSHKeys: []string{"ssh-ed25519 AAAA k1"},
		NICs: []NIC{{MAC: "00:16:3E:00:00:01", Address: "10.77.0.10/24", Gateway: "10.77.0.1", DNS: []string{"10.77.0.1"}}}}
	for _, c := range []struct {
		name  string
		s     Settings
		user  []string // in user-data
		net   []string // in network-config
		nouse []string // not in user-data
	}{
		{"static", base, []string{"#cloud-config\n", `"hostname":"web01"`, `"ssh_authorized_keys":["ssh-ed25519 AAAA k1"]`, `"disable_root":false`},
			[]string{`"macaddress":"00:16:3e:00:00:01"`, `"addresses":["10.77.0.10/24"]`, `"via":"10.77.0.1"`, `"nameservers":{"addresses":["10.77.0.1"]}`},
			[]string{"chpasswd", "multipart"}},
		{"dhcp and password", Settings{Hostname: "h", PasswordHash: "$6$x$y", NICs: []NIC{{MAC: "00:16:3e:00:00:02"}}},
			[]string{`"chpasswd":{"expire":false,"users":[{"name":"root","password":"$6$x$y","type":"hash"}]}`, `"ssh_authorized_keys":[]`},
			[]string{`"dhcp4":true`}, []string{"addresses"}},
		{"user-data script", Settings{Hostname: "h", UserData: "#!/bin/sh\necho hi\n"},
			[]string{"Content-Type: multipart/mixed", "text/cloud-config", "text/x-shellscript", "echo hi"},
			[]string{`"ethernets":{}`}, nil},
	} {
		f, err := Render(c.s)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, w := range c.user {
			if !strings.Contains(string(f.UserData), w) {
				t.Errorf("%s: user-data lacks %s:\n%s", c.name, w, f.UserData)
			}
		}
		for _, w := range c.nouse {
			if strings.Contains(string(f.UserData), w) {
				t.Errorf("%s: user-data has %s", c.name, w)
			}
		}
		for _, w := range c.net {
			if !strings.Contains(string(f.NetworkConfig), w) {
				t.Errorf("%s: network-config lacks %s:\n%s", c.name, w, f.NetworkConfig)
			}
		}
		var meta map[string]string
		if err := json.Unmarshal(f.MetaData, &meta); err != nil || meta["instance-id"] != c.s.InstanceID() || meta["local-hostname"] != c.s.Hostname {
			t.Errorf("%s: meta-data %s (%v)", c.name, f.MetaData, err)
		}
	}
}

// A change of any setting is a new instance (cloud-init applies it
// again); the same settings are the same instance.
func TestInstanceID(t *testing.T) {
	a := Settings{Hostname: "a", SSHKeys: []string{"k"}}
	b := a
	b.SSHKeys = []string{"k2"}
	if a.InstanceID() != (Settings{Hostname: "a", SSHKeys: []string{"k"}}).InstanceID() || a.InstanceID() == b.InstanceID() {
		t.Errorf("instance ids: %s %s", a.InstanceID(), b.InstanceID())
	}
}

func TestCheckUserData(t *testing.T) {
	for s, ok := range map[string]bool{"": true, "#cloud-config\n{}": true, "#!/bin/sh\n": true, "hello": false} {
		if err := CheckUserData(s); (err == nil) != ok {
			t.Errorf("CheckUserData(%q) = %v", s, err)
		}
	}
}
