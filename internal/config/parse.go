// Package config reads Xen domain files (xl.cfg syntax) into api.DomainSpec.
//
// It has two layers, like Xen's libxlu: Parse turns text into settings
// whose values remember their file:line:col, and Decode applies the key
// table (keys.go) to turn settings into a spec, with warnings for keys
// that mean nothing here and errors that name the position and the rule.
package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Pos is a place in a domain file.
type Pos struct {
	File string
	Line int
	Col  int
}

func (p Pos) String() string {
	if p.File == "" {
		return fmt.Sprintf("%d:%d", p.Line, p.Col)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Error is a diagnostic with a position.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Kind of a value.
type Kind int

const (
	String Kind = iota
	Number
	List
)

// Value is a parsed right-hand side.
type Value struct {
	Kind  Kind
	Str   string // String, and the literal text of a Number
	Num   int64
	Items []Value
	Pos   Pos
	Octal bool // a number with a leading 0, which xl reads as octal
}

// Setting is one `key = value` or `key += value`.
type Setting struct {
	Key    string
	Value  Value
	Pos    Pos
	Append bool // +=
}

type lexer struct {
	file string
	src  []rune
	i    int
	line int
	col  int
}

func (l *lexer) pos() Pos { return Pos{l.file, l.line, l.col} }

func (l *lexer) peek() rune {
	if l.i >= len(l.src) {
		return 0
	}
	return l.src[l.i]
}

func (l *lexer) next() rune {
	r := l.peek()
	if r == 0 {
		return 0
	}
	l.i++
	if r == '\n' {
		l.line++
		l.col = 1
	} else {
		l.col++
	}
	return r
}

// skip skips blanks and comments; newlines too when nl is true.
func (l *lexer) skip(nl bool) {
	for {
		switch r := l.peek(); {
		case r == ' ' || r == '\t' || r == '\r':
			l.next()
		case r == '\n' && nl:
			l.next()
		case r == '#':
			for l.peek() != '\n' && l.peek() != 0 {
				l.next()
			}
		case r == '\\' && l.i+1 < len(l.src) && l.src[l.i+1] == '\n':
			l.next()
			l.next()
		default:
			return
		}
	}
}

func (l *lexer) errf(p Pos, format string, a ...any) error {
	return &Error{Pos: p, Msg: fmt.Sprintf(format, a...)}
}

// xl keys are [a-z][._0-9a-z]*; we read upper case too, to say exactly
// what is wrong with it.
func isKeyStart(r rune) bool { return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') }

func isKeyChar(r rune) bool {
	return isKeyStart(r) || (r >= '0' && r <= '9') || r == '_' || r == '.'
}

// Parse reads a whole domain file. file names it in diagnostics.
func Parse(file string, src []byte) ([]Setting, error) {
	l := &lexer{file: file, src: []rune(string(src)), line: 1, col: 1}
	var out []Setting
	for {
		l.skip(true)
		if l.peek() == ';' {
			l.next()
			continue
		}
		if l.peek() == 0 {
			return out, nil
		}
		p := l.pos()
		if !isKeyStart(l.peek()) {
			return nil, l.errf(p, "expected a setting name (like `memory = 512`), found %q%s", l.peek(), pythonHint(l))
		}
		var key strings.Builder
		for isKeyChar(l.peek()) {
			key.WriteRune(l.next())
		}
		if k := key.String(); k != strings.ToLower(k) {
			return nil, l.errf(p, "setting names are lower case in xl.cfg: write %q, not %q", strings.ToLower(k), k)
		}
		l.skip(false)
		appendOp := false
		if l.peek() == '+' && l.i+1 < len(l.src) && l.src[l.i+1] == '=' {
			l.next()
			appendOp = true
		}
		if l.peek() != '=' {
			return nil, l.errf(l.pos(), "expected `=` after %q; xl.cfg lines are `key = value`%s", key.String(), pythonHint(l))
		}
		l.next()
		l.skip(false)
		v, err := l.value()
		if err != nil {
			return nil, err
		}
		out = append(out, Setting{Key: key.String(), Value: v, Pos: p, Append: appendOp})
		l.skip(false)
		switch r := l.peek(); r {
		case '\n', ';', 0:
		default:
			return nil, l.errf(l.pos(), "unexpected %q after the value of %q: one setting per line, or separate them with `;`", r, key.String())
		}
	}
}

// pythonHint recognises legacy xm files that are really Python.
func pythonHint(l *lexer) string {
	start := l.i
	for start > 0 && l.src[start-1] != '\n' {
		start--
	}
	end := l.i
	for end < len(l.src) && l.src[end] != '\n' {
		end++
	}
	line := strings.TrimSpace(string(l.src[start:end]))
	for _, kw := range []string{"import ", "from ", "if ", "for ", "def ", "else", "elif "} {
		if strings.HasPrefix(line, kw) {
			return fmt.Sprintf(" (this looks like Python %q from a legacy xm file, which xl.cfg does not support: replace it with plain `key = value` settings)", strings.TrimSpace(kw))
		}
	}
	return ""
}

func (l *lexer) value() (Value, error) {
	p := l.pos()
	switch r := l.peek(); {
	case r == '"' || r == '\'':
		s, err := l.str()
		return Value{Kind: String, Str: s, Pos: p}, err
	case r == '[':
		l.next()
		v := Value{Kind: List, Pos: p}
		for {
			l.skip(true)
			if l.peek() == ']' {
				l.next()
				return v, nil
			}
			item, err := l.value()
			if err != nil {
				return v, err
			}
			v.Items = append(v.Items, item)
			l.skip(true)
			switch l.peek() {
			case ',':
				l.next()
			case ']':
			case 0:
				return v, l.errf(p, "list opened here is never closed with `]`")
			default:
				return v, l.errf(l.pos(), "expected `,` or `]` in list, found %q", l.peek())
			}
		}
	case r >= '0' && r <= '9' || r == '-':
		var b strings.Builder
		for {
			c := l.peek()
			if !(c >= '0' && c <= '9' || c == '-' || c == 'x' || c == 'X' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.') {
				break
			}
			b.WriteRune(l.next())
		}
		lit := b.String()
		n, err := strconv.ParseInt(lit, 0, 64)
		if err != nil {
			return Value{}, l.errf(p, "%q is not a number (xl.cfg numbers are whole: decimal, 0x hex or 0 octal)", lit)
		}
		digits := strings.TrimPrefix(lit, "-")
		octal := len(digits) > 1 && digits[0] == '0' && digits[1] != 'x' && digits[1] != 'X'
		return Value{Kind: Number, Num: n, Str: lit, Pos: p, Octal: octal}, nil
	case r == 0 || r == '\n' || r == ';':
		return Value{}, l.errf(p, "expected a value (a number, a 'string' or a [list]) after `=`, found the end of the line")
	case r == '=' || r == ',' || r == ']':
		return Value{}, l.errf(p, "expected a value (a number, a 'string' or a [list]), found %q", r)
	default:
		var b strings.Builder
		for c := l.peek(); c != 0 && c != '\n' && c != ';'; c = l.peek() {
			b.WriteRune(l.next())
		}
		word := strings.TrimSpace(b.String())
		return Value{}, l.errf(p, "value %q must be quoted: write '%s'", word, strings.ReplaceAll(word, "'", `\'`))
	}
}

func (l *lexer) str() (string, error) {
	p := l.pos()
	q := l.next()
	var b strings.Builder
	for {
		r := l.next()
		switch r {
		case 0, '\n':
			return "", l.errf(p, "string opened here is not closed with %c", q)
		case q:
			return b.String(), nil
		case '\\':
			e := l.next()
			switch e {
			case 'n':
				b.WriteRune('\n')
			case 't':
				b.WriteRune('\t')
			case 'x':
				h := string(l.next()) + string(l.next())
				n, err := strconv.ParseUint(h, 16, 8)
				if err != nil {
					return "", l.errf(p, "bad escape \\x%s: write two hex digits", h)
				}
				b.WriteByte(byte(n))
			case '0', '1', '2', '3', '4', '5', '6', '7':
				o := string(e)
				for len(o) < 3 && l.peek() >= '0' && l.peek() <= '7' {
					o += string(l.next())
				}
				n, _ := strconv.ParseUint(o, 8, 8)
				b.WriteByte(byte(n))
			case 0:
				return "", l.errf(p, "string opened here is not closed with %c", q)
			default:
				b.WriteRune(e)
			}
		default:
			b.WriteRune(r)
		}
	}
}
