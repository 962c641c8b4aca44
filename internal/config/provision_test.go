package config

import (
	"strings"
	"testing"
)

func TestProvisionKeys(t *testing.T) {
	good := "name='web01'\nimage='debian-12'\ndisk_size='10G'\nhostname='www'\nguest_agent=1\n" +
		"ssh_authorized_keys=['ssh-ed25519 AAAAC3Nz k1', 'ecdsa-sha2-nistp256 AAAAE2 k2']\n" +
		"root_password_hash='$6$salt$hash'\nuser_data='#cloud-config\\npackages: [nginx]\\n'\nvif=['bridge=nat0,ip=10.77.0.10']\n"
	s, _, err := Decode("t.cfg", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	p := s.Provision
	if p == nil || p.Image != "debian-12" || p.DiskSizeB != 10<<30 || p.Hostname != "www" || len(p.SSHKeys) != 2 ||
		p.PasswordHash != "$6$salt$hash" || !strings.Contains(p.UserData, "packages: [nginx]\n") || !s.GuestAgent {
		t.Fatalf("provisioning keys: %+v %+v", s, p)
	}
	// Written back and read again: the same.
	s2, _, err := Decode("t.cfg", []byte(Format(s)))
	if err != nil || s2.Provision == nil || s2.Provision.UserData != p.UserData || len(s2.Provision.SSHKeys) != 2 || s2.Provision.DiskSizeB != p.DiskSizeB {
		t.Fatalf("round trip: %v\n%s", err, Format(s))
	}
	for _, c := range []struct{ src, want string }{
		{"name='a'\nssh_authorized_keys=['ssh-ed25519 AAAA k']", "add image = 'debian-12'"},
		{"name='a'\nimage='../x'", "image"},
		{"name='a'\nimage='d'\ndisk_size='big'", "want a size like 10G"},
		{"name='a'\nimage='d'\nhostname='a_b'", "letters, digits and -"},
		{"name='a'\nimage='d'\nssh_authorized_keys=['hello']", "not an OpenSSH public key"},
		{"name='a'\nimage='d'\nroot_password_hash='secret'", "never the password itself"},
	} {
		if _, _, err := Decode("t.cfg", []byte(c.src)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.src, err, c.want)
		}
	}
}
