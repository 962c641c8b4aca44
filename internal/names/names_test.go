package names

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want string
	}{
		{"web01", true, ""},
		{"a.b_c-d", true, ""},
		{strings.Repeat("a", 64), true, ""},
		{"", false, "empty"},
		{"..", false, "'..'"},
		{"a..b", false, "'..'"},
		{"../domains/g1", false, ""},
		{"g1/destroy?", false, "'/'"},
		{"g1\r\nX: y", false, "control character"},
		{"-x", false, "starting with"},
		{".hidden", false, "starting with"},
		{strings.Repeat("a", 65), false, "65 bytes"},
		{"XenGuest2&test", false, "'&' is not allowed: names are typed in shells"},
		{"a b&c", false, "' ', '&' are not allowed"},
	} {
		err := Check("domain", tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%q) = %q, want it to mention %q", tc.in, err, tc.want)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("Check(%q) echoes a control character: %q", tc.in, err)
		}
	}
}
