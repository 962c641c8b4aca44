package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
)

// LoadOverrides reads a domain file with `xl create FILE KEY=VALUE...`
// arguments applied as xl applies them: appended to the file's text, so a
// later setting wins and `;` separates several in one argument. A
// diagnostic about an override names it (`argument 2 "memory=x":1:10:`)
// rather than a line past the end of the file.
func LoadOverrides(path string, overrides []string) (api.DomainSpec, []Warning, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return api.DomainSpec{}, nil, fmt.Errorf("reading domain file: %w", err)
	}
	if len(src) > 0 && !bytes.HasSuffix(src, []byte("\n")) {
		src = append(src, '\n')
	}
	base := bytes.Count(src, []byte("\n"))
	argPos := func(i int) Pos { return Pos{File: fmt.Sprintf("argument %d %q", i+1, overrides[i]), Line: 1, Col: 1} }
	for i, o := range overrides {
		if k, _, ok := strings.Cut(o, "="); !ok || strings.TrimSpace(k) == "" {
			return api.DomainSpec{}, nil, &Error{Pos: argPos(i), Msg: "expected KEY=VALUE after the domain file, as in the file itself (memory=512; several in one argument with `;`)"}
		}
		if strings.ContainsAny(o, "\n\r") {
			return api.DomainSpec{}, nil, &Error{Pos: argPos(i), Msg: "a newline in an override: give each setting as its own argument or separate them with `;`"}
		}
		src = append(append(src, o...), '\n')
	}
	remap := func(p Pos) Pos {
		if p.File == path && p.Line > base && p.Line-base <= len(overrides) {
			q := argPos(p.Line - base - 1)
			q.Col = p.Col
			return q
		}
		return p
	}
	spec, warns, err := Decode(path, src)
	for i := range warns {
		warns[i].Pos = remap(warns[i].Pos)
	}
	var pe *Error
	if errors.As(err, &pe) {
		pe.Pos = remap(pe.Pos)
	}
	return spec, warns, err
}
