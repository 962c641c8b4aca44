// Package names is the one rule for the names people give things here
// (domains, pools, volumes, snapshots, networks, peer hosts). Names become
// directory names, store keys, URL path segments and parts of QEMU and
// interface names, so one safe alphabet is accepted everywhere: the file
// parser, the API server on every route, and the client before it builds
// a request.
package names

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// MaxLen is the longest name accepted.
const MaxLen = 64

var re = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Valid reports whether s follows the rule.
func Valid(s string) bool { return re.MatchString(s) && !strings.Contains(s, "..") }

// notAllowed says r is outside the names' alphabet.
func notAllowed(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-')
}

// badChars lists the characters of s outside the alphabet, once each:
// "'&' is", "'&', ' ' are".
func badChars(s string) string {
	var list []string
	seen := map[rune]bool{}
	for _, r := range s {
		if notAllowed(r) && !seen[r] {
			seen[r] = true
			list = append(list, strconv.QuoteRune(r))
		}
	}
	if len(list) == 1 {
		return list[0] + " is"
	}
	return strings.Join(list, ", ") + " are"
}

// Check returns an error naming what is wrong with s as a kind ("domain",
// "pool", ...). The bad name is quoted with %q so control characters are
// shown escaped, never echoed raw into a terminal or a header.
func Check(kind, s string) error {
	if Valid(s) {
		return nil
	}
	why := "use 1-64 letters, digits, '_', '.', '-', starting with a letter or digit"
	switch {
	case s == "":
		why = "it is empty; " + why
	case strings.Contains(s, ".."):
		why = "'..' is not allowed (names become file names); " + why
	case strings.ContainsAny(s, "/\\"):
		why = "'/' is not allowed (names become file names and URL segments); " + why
	case strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		why = "it contains a control character; " + why
	case len(s) > MaxLen:
		why = fmt.Sprintf("it is %d bytes long; %s", len(s), why)
	case strings.IndexFunc(s, notAllowed) >= 0:
		why = fmt.Sprintf("%s not allowed: names are typed in shells (where such characters need quoting or run commands) and become file and cgroup names, URL segments and QEMU arguments; %s", badChars(s), why)
	}
	return fmt.Errorf("%q is not a valid %s name: %s", s, kind, why)
}
