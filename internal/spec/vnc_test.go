package spec

import (
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

// The VNC rules every spec passes (a file, the JSON API, a restore, a
// migrating peer): a password needs a display, is 0..8 printable ASCII
// characters, and is never the placeholder the API shows for one.
func TestNormalizeVNC(t *testing.T) {
	for _, tc := range []struct {
		name string
		vnc  bool
		pass string
		want string // "" = valid
	}{
		{"no display", false, "", ""},
		{"display, no password", true, "", ""},
		{"display and password", true, "s3cret", ""},
		{"eight printable", true, "~!@#$%^&", ""},
		{"password without display", false, "s3cret", "vncpasswd is set but vnc is off: add vnc = 1"},
		{"nine characters", true, "123456789", "vncpasswd: 9 characters"},
		{"control character", true, "a\nb", "printable ASCII"},
		{"non-ASCII", true, "pässwd", "printable ASCII"},
		{"the placeholder", true, api.HiddenPassword, "is the placeholder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := api.DomainSpec{Name: "v1", Kernel: "/k", VNC: tc.vnc, VNCPassword: tc.pass}
			err := Normalize(&s)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("%v, want %q", err, tc.want)
			}
		})
	}
}

// Shown hides a set password and nothing else.
func TestShownHidesPassword(t *testing.T) {
	s := api.DomainSpec{Name: "v1", VNC: true, VNCPassword: "s3cret"}
	if got := s.Shown(); got.VNCPassword != api.HiddenPassword || !got.VNC || s.VNCPassword != "s3cret" {
		t.Fatalf("Shown %+v (original %q)", got, s.VNCPassword)
	}
	if got := (api.DomainSpec{VNC: true}).Shown(); got.VNCPassword != "" {
		t.Fatalf("no password shown as %q", got.VNCPassword)
	}
}
