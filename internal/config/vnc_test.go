package config

import (
	"reflect"
	"strings"
	"testing"
)

// The VNC keys: vnc and vncpasswd are honoured; the host-port keys (and a
// password with no display) are reported in exactly one warning line,
// at the first of them, saying where the display is instead; bad values
// fail at their position; what is honoured survives Format and Decode.
func TestVNCKeys(t *testing.T) {
	const head = "name='v1'\nkernel='/k'\n"
	cases := []struct {
		name     string
		src      string
		vnc      bool
		pass     string
		warning  string // the one warning's text ("" = none)
		notInMsg string
	}{
		{"absent", "", false, "", "", ""},
		{"off", "vnc=0", false, "", "", ""},
		{"on", "vnc=1", true, "", "", ""},
		{"quoted on", "vnc='1'", true, "", "", ""},
		{"password", "vnc=1\nvncpasswd='s3cret'", true, "s3cret", "", ""},
		{"empty password is none", "vnc=1\nvncpasswd=''", true, "", "", ""},
		{"eight characters", "vnc=1\nvncpasswd='12345678'", true, "12345678", "", ""},
		{"one host key", "vnc=1\nvnclisten='0.0.0.0'", true, "",
			"t.cfg:4:11: warning: \"vnclisten\" is ignored: ringfence opens no VNC port on the host; the display is reached through `ringfence vnc v1` (a local tunnel) or the API (/1.0/domains/v1/vnc)", ""},
		{"every host key, one line", "vnclisten='0.0.0.0'\nvnc=1\nvncdisplay=3\nvncunused=0\nvncconsole=1\nvncpasswd='pw'", true, "pw",
			`t.cfg:3:11: warning: "vnclisten", "vncdisplay", "vncunused", "vncconsole" are ignored: ringfence opens no VNC port`, "vncpasswd"},
		{"host keys with vnc off", "vncunused=1\nvncdisplay=0", false, "",
			`t.cfg:3:11: warning: "vncunused", "vncdisplay" are ignored: vnc is off (vnc = 1 turns the display on, reached through ` + "`ringfence vnc v1`", ""},
		{"password with vnc off is dropped", "vnc=0\nvncpasswd='pw'", false, "",
			`t.cfg:4:11: warning: "vncpasswd" is ignored: vnc is off`, ""},
		{"password and host key with vnc off", "vnclisten='::'\nvncpasswd='pw'", false, "",
			`t.cfg:3:11: warning: "vnclisten", "vncpasswd" are ignored: vnc is off`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, warns, err := Decode("t.cfg", []byte(head+tc.src+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if s.VNC != tc.vnc || s.VNCPassword != tc.pass {
				t.Fatalf("vnc %v password %q, want %v %q", s.VNC, s.VNCPassword, tc.vnc, tc.pass)
			}
			var got []string
			for _, w := range warns {
				got = append(got, w.String())
			}
			switch {
			case tc.warning == "" && len(got) != 0:
				t.Fatalf("warnings %q, want none", got)
			case tc.warning != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tc.warning) || strings.Contains(got[0], "\n")):
				t.Fatalf("warnings %q, want one line starting %q", got, tc.warning)
			case tc.notInMsg != "" && strings.Contains(got[0], tc.notInMsg):
				t.Fatalf("warning %q names %s, which is honoured", got[0], tc.notInMsg)
			}
			if sum := strings.Join(Summary(s), "\n"); strings.Contains(sum, "ringfence vnc v1") != tc.vnc {
				t.Fatalf("summary (vnc %v):\n%s", tc.vnc, sum)
			}
			again, _, err := Decode("x.cfg", []byte(Format(s)))
			if err != nil || !reflect.DeepEqual(s, again) {
				t.Fatalf("round trip: %v\n%s", err, Format(s))
			}
		})
	}
}

// Bad VNC values: one error at the value's position saying what to do.
func TestVNCKeysRefused(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"vnc=2", "t.cfg:3:5: vnc: 2 is out of range 0..1"},
		{"vnc='yes'", `t.cfg:3:5: vnc: "yes" is not a whole number`},
		{"vnc=1\nvncpasswd='123456789'", "t.cfg:4:11: vncpasswd: 9 characters: VNC authentication uses only the first 8"},
		{"vnc=1\nvncpasswd='pa\\tss'", "t.cfg:4:11: vncpasswd: use printable ASCII characters only"},
		{"vnc=1\nvncpasswd='********'", "is the placeholder ringfence shows in place of a set password"},
		{"vnc=1\nvncpasswd=[8]", "t.cfg:4:11: vncpasswd: expected a quoted string, not a list"},
	} {
		_, _, err := Decode("t.cfg", []byte("name='v1'\nkernel='/k'\n"+tc.src+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.src, err, tc.want)
		}
	}
}
