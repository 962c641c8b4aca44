package spec

import (
	"fmt"

	"github.com/ringfence/ringfence/internal/api"
)

// MaxVNCPassword is the longest VNC password: RFB's VNC authentication
// keys DES with the first 8 bytes and ignores the rest, so a longer one
// would only look stronger than it is.
const MaxVNCPassword = 8

// ValidVNCPassword is vncpasswd's rule: empty (no password) or 1..8
// printable ASCII characters (what every viewer can type), and not the
// placeholder the API shows for a set password.
func ValidVNCPassword(s string) error {
	if s == api.HiddenPassword {
		return fmt.Errorf("%q is the placeholder ringfence shows in place of a set password (`config export`): write the password itself, or keep it with `config update`", s)
	}
	if len(s) > MaxVNCPassword {
		return fmt.Errorf("%d characters: VNC authentication uses only the first %d (RFB keys DES with them), so a longer one is weaker than it looks; shorten it", len(s), MaxVNCPassword)
	}
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("use printable ASCII characters only (a viewer must be able to type it)")
		}
	}
	return nil
}

// checkVNC: a password needs a display to protect.
func checkVNC(s *api.DomainSpec) error {
	if err := ValidVNCPassword(s.VNCPassword); err != nil {
		return fmt.Errorf("vncpasswd: %w", err)
	}
	if s.VNCPassword != "" && !s.VNC {
		return fmt.Errorf("vncpasswd is set but vnc is off: add vnc = 1 (or drop vncpasswd)")
	}
	return nil
}
