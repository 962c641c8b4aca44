// Package config reads Xen domain files (xl.cfg syntax) into api.DomainSpec.
//
// It has two layers, like Xen's libxlu: Parse turns text into settings
// whose values remember their file:line:col, and Decode applies the key
// table (keys.go) to turn settings into a spec, with warnings for keys
// that mean nothing here and errors that name the position and the rule.
// Both go on after an error, so a file's every error is reported at once.
package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/ringfence/ringfence/internal/spec"
)

// Limits on what is read: a domain file is a few KB of text with lists
// nested at most two deep (vnuma = [ [ ... ] ]). The limits keep a wrong
// file (/dev/zero, a million '[') from running the reader out of memory
// or stack.
const (
	MaxFileSize = 1 << 20
	MaxDepth    = 8
	MaxErrors   = 50
)

// Pos is a place in a domain file.
type Pos struct {
	File string
	Line int
	Col  int
}

func (p Pos) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.File == "":
		return fmt.Sprintf("%d:%d", p.Line, p.Col)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// before orders positions in a file.
func (p Pos) before(q Pos) bool { return p.Line < q.Line || (p.Line == q.Line && p.Col < q.Col) }

// Error is a diagnostic with a position.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Errors are every error found in a file, in line order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// sorted puts es in line order and returns it as an error, nil (a nil
// error) when empty.
func (es Errors) sorted() error {
	if len(es) == 0 {
		return nil
	}
	sort.SliceStable(es, func(i, j int) bool { return es[i].Pos.before(es[j].Pos) })
	return es
}

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

const eof = -1

type lexer struct {
	file string
	src  []rune
	i    int
	line int
	col  int
	errs Errors
	// xlOnly are what xl's own lexer refuses and this reader takes (a
	// final comment with no newline, an unquoted negative number, an
	// unknown escape): warnings, or errors under Strict.
	xlOnly []Warning
	// broken are the keys of settings with a syntax error, so the
	// decoder does not also call them missing.
	broken map[string]bool
}

func (l *lexer) pos() Pos { return Pos{l.file, l.line, l.col} }

func (l *lexer) peek() rune {
	if l.i >= len(l.src) {
		return eof
	}
	return l.src[l.i]
}

func (l *lexer) peekAt(n int) rune {
	if l.i+n >= len(l.src) {
		return eof
	}
	return l.src[l.i+n]
}

func (l *lexer) next() rune {
	r := l.peek()
	if r == eof {
		return eof
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
			p := l.pos()
			for l.peek() != '\n' && l.peek() != eof {
				l.next()
			}
			if l.peek() == eof {
				l.xlOnly = append(l.xlOnly, Warning{Pos: p, Msg: "the file ends in a comment with no newline after it, which xl's parser refuses (lexical error): end the file with a newline"})
			}
		case r == '\\' && l.peekAt(1) == '\n':
			l.xlOnly = append(l.xlOnly, Warning{Pos: l.pos(), Msg: "a backslash line continuation, which xl's parser refuses: join the lines"})
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

// Parse reads a whole domain file. file names it in diagnostics. The
// error, if any, is Errors: every error found, in line order.
func Parse(file string, src []byte) ([]Setting, error) {
	l := parse(file, src)
	return l.settings, l.errs.sorted()
}

// parsed is what parse read: the settings, and what the decoder needs to
// know beside them.
type parsed struct {
	settings []Setting
	errs     Errors
	xlOnly   []Warning
	broken   map[string]bool
	notText  bool // refused whole (size, NUL): nothing was read
}

// parse is Parse that also returns what only xl's lexer would refuse and
// which keys had a syntax error.
func parse(file string, src []byte) parsed {
	if err := checkText(file, src); err != nil {
		return parsed{errs: err.(Errors), notText: true}
	}
	l := &lexer{file: file, src: []rune(string(src)), line: 1, col: 1, broken: map[string]bool{}}
	var out []Setting
	for len(l.errs) < MaxErrors {
		l.skip(true)
		if l.peek() == ';' {
			l.next()
			continue
		}
		if l.peek() == eof {
			break
		}
		s, err := l.setting()
		if err != nil {
			l.errs = append(l.errs, err.(*Error))
			l.broken[s.Key] = true
			l.recover()
			continue
		}
		out = append(out, s)
	}
	if len(l.errs) >= MaxErrors {
		l.errs = append(l.errs, &Error{Pos: l.pos(), Msg: fmt.Sprintf("stopping after %d errors: is this a domain file?", MaxErrors)})
	}
	return parsed{settings: out, errs: l.errs, xlOnly: l.xlOnly, broken: l.broken}
}

// checkText refuses what is not a domain file's text: one too big to be
// one, or with NUL bytes (which used to end the file silently, dropping
// every setting after them). Each line with a NUL is named.
func checkText(file string, src []byte) error {
	if len(src) > MaxFileSize {
		return Errors{{Pos: Pos{File: file}, Msg: fmt.Sprintf("%d bytes or more, over the %d a domain file may have (they are a few KB of text): is this the right file?", len(src), MaxFileSize)}}
	}
	var errs Errors
	line, col := 1, 1
	for _, r := range string(src) {
		switch {
		case r == 0 && (len(errs) == 0 || errs[len(errs)-1].Pos.Line != line):
			errs = append(errs, &Error{Pos: Pos{file, line, col}, Msg: "a NUL byte: a domain file is text (is it truncated, binary or saved in UTF-16?); remove it"})
			if len(errs) == MaxErrors {
				return errs
			}
		case r == '\n':
			line, col = line+1, 0
		}
		col++
	}
	return errs.sorted()
}

// recover skips the rest of a setting that had an error: the rest of its
// line and the lines that cannot start a setting (a broken list's items),
// as xl's parser does.
func (l *lexer) recover() {
	for {
		for l.peek() != '\n' && l.peek() != eof {
			l.next()
		}
		if l.peek() == eof {
			return
		}
		l.next()
		for l.peek() == ' ' || l.peek() == '\t' || l.peek() == '\r' {
			l.next()
		}
		if r := l.peek(); isKeyStart(r) || r == '#' || r == '\n' || r == eof {
			return
		}
	}
}

// setting reads one `key = value`.
func (l *lexer) setting() (Setting, error) {
	p := l.pos()
	if !isKeyStart(l.peek()) {
		return Setting{}, l.errf(p, "expected a setting name (like `memory = 512`), found %s%s", show(l.peek()), pythonHint(l))
	}
	var key strings.Builder
	for isKeyChar(l.peek()) {
		key.WriteRune(l.next())
	}
	fail := func(err error) (Setting, error) { return Setting{Key: key.String()}, err }
	if k := key.String(); k != strings.ToLower(k) {
		return fail(l.errf(p, "setting names are lower case in xl.cfg: write %q, not %q", strings.ToLower(k), k))
	}
	l.skip(false)
	appendOp := false
	if l.peek() == '+' && l.peekAt(1) == '=' {
		l.next()
		appendOp = true
	}
	if l.peek() != '=' {
		return fail(l.errf(l.pos(), "expected `=` after %q, found %s; xl.cfg lines are `key = value` (keys are a-z, 0-9, '_' and '.')%s", key.String(), show(l.peek()), pythonHint(l)))
	}
	l.next()
	l.skip(false)
	v, err := l.value(0)
	if err != nil {
		return fail(err)
	}
	l.skip(false)
	switch r := l.peek(); r {
	case '\n', ';', eof:
	default:
		return fail(l.errf(l.pos(), "unexpected %s after the value of %q: one setting per line, or separate them with `;`", show(r), key.String()))
	}
	return Setting{Key: key.String(), Value: v, Pos: p, Append: appendOp}, nil
}

// show names a character in a message.
func show(r rune) string {
	switch r {
	case eof:
		return "the end of the file"
	case '\n':
		return "the end of the line"
	}
	return strconv.QuoteRune(r)
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
	for _, kw := range []string{"import ", "from ", "if ", "for ", "def ", "else", "elif ", "return "} {
		if strings.HasPrefix(line, kw) {
			return fmt.Sprintf(" (this looks like Python %q from a legacy xm file, which xl.cfg does not support: replace it with plain `key = value` settings)", strings.TrimSpace(kw))
		}
	}
	return ""
}

func (l *lexer) value(depth int) (Value, error) {
	p := l.pos()
	switch r := l.peek(); {
	case r == '"' || r == '\'':
		s, err := l.str()
		return Value{Kind: String, Str: s, Pos: p}, err
	case r == '[':
		if depth >= MaxDepth {
			return Value{}, l.errf(p, "lists nested %d deep: xl.cfg nests them at most two deep (vnuma = [ [ ... ] ]); is this a domain file?", depth+1)
		}
		return l.list(depth)
	case r >= '0' && r <= '9' || r == '-':
		return l.number()
	case r == eof || r == '\n' || r == ';':
		return Value{}, l.errf(p, "expected a value (a number, a 'string' or a [list]) after `=`, found the end of the line")
	case r == '=' || r == ',' || r == ']':
		return Value{}, l.errf(p, "expected a value (a number, a 'string' or a [list]), found %q", r)
	default:
		var b strings.Builder
		for c := l.peek(); c != eof && c != '\n' && c != ';'; c = l.peek() {
			b.WriteRune(l.next())
		}
		word := strings.TrimSpace(b.String())
		return Value{}, l.errf(p, "value %q must be quoted: write '%s'", word, strings.ReplaceAll(word, "'", `\'`))
	}
}

// list reads [ item, item, ] (a trailing comma is allowed, as in xl).
func (l *lexer) list(depth int) (Value, error) {
	p := l.pos()
	l.next()
	v := Value{Kind: List, Pos: p}
	for {
		l.skip(true)
		if l.peek() == ']' {
			l.next()
			return v, nil
		}
		if l.peek() == eof {
			return v, l.errf(p, "list opened here is never closed with `]`")
		}
		item, err := l.value(depth + 1)
		if err != nil {
			return v, err
		}
		v.Items = append(v.Items, item)
		l.skip(true)
		switch l.peek() {
		case ',':
			l.next()
		case ']':
		case eof:
			return v, l.errf(p, "list opened here is never closed with `]`")
		default:
			return v, l.errf(l.pos(), "expected `,` or `]` in the list, found %s", show(l.peek()))
		}
	}
}

// number reads an unquoted number: decimal, 0x hex or 0 octal, as xl.
func (l *lexer) number() (Value, error) {
	p := l.pos()
	var b strings.Builder
	for {
		c := l.peek()
		if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == 'x' || c == 'X' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '_') {
			break
		}
		b.WriteRune(l.next())
	}
	lit := b.String()
	n, octal, err := spec.ParseInt(lit)
	if err != nil {
		return Value{}, l.errf(p, "%q is not a number: xl.cfg numbers are whole, decimal, 0x hex or 0 octal (quote text: '%s')", lit, lit)
	}
	if strings.HasPrefix(lit, "-") {
		l.xlOnly = append(l.xlOnly, Warning{Pos: p, Msg: fmt.Sprintf("an unquoted negative number, which xl's parser refuses (lexical error): write '%s'", lit)})
	}
	return Value{Kind: Number, Num: n, Str: lit, Pos: p, Octal: octal}, nil
}

// str reads a quoted string with xl's escapes (libxlu's dequote: \" \'
// \\ \a \b \f \n \r \t \v, \xHH, \OOO).
func (l *lexer) str() (string, error) {
	p := l.pos()
	q := l.next()
	var b strings.Builder
	for {
		r := l.next()
		switch r {
		case eof, '\n':
			return "", l.errf(p, "string opened here is not closed with %c", q)
		case q:
			return b.String(), nil
		case '\\':
			if err := l.escape(&b, p, q); err != nil {
				return "", err
			}
		default:
			b.WriteRune(r)
		}
	}
}

var simpleEscapes = map[rune]byte{'"': '"', '\'': '\'', '\\': '\\', 'a': 7, 'b': 8, 'f': 12, 'n': '\n', 'r': '\r', 't': '\t', 'v': 11}

// escape reads one escape after a backslash into b.
func (l *lexer) escape(b *strings.Builder, p Pos, q rune) error {
	ep := l.pos()
	e := l.next()
	if c, ok := simpleEscapes[e]; ok {
		b.WriteByte(c)
		return nil
	}
	switch {
	case e == 'x':
		h := string(l.next()) + string(l.next())
		n, err := strconv.ParseUint(h, 16, 8)
		if err != nil {
			return l.errf(ep, "bad escape \\x%s: write two hex digits", h)
		}
		b.WriteByte(byte(n))
	case e >= '0' && e <= '7':
		o := string(e)
		for len(o) < 3 && l.peek() >= '0' && l.peek() <= '7' {
			o += string(l.next())
		}
		n, _ := strconv.ParseUint(o, 8, 8)
		b.WriteByte(byte(n))
	case e == eof || e == '\n':
		return l.errf(p, "string opened here is not closed with %c", q)
	default:
		l.xlOnly = append(l.xlOnly, Warning{Pos: ep, Msg: fmt.Sprintf("the escape \\%c, which xl's parser refuses (invalid character escape): it is read as %c; write \\\\ for a backslash", e, e)})
		b.WriteRune(e)
	}
	return nil
}
