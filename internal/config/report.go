package config

import (
	"errors"
	"sort"
)

// Diagnostic is one error or warning about a file, as a linter reads it
// (`config check --json`).
type Diagnostic struct {
	File     string `json:"file"`
	Line     int    `json:"line,omitempty"`
	Col      int    `json:"col,omitempty"`
	Severity string `json:"severity"` // error or warning
	Key      string `json:"key,omitempty"`
	Message  string `json:"message"`
}

func (d Diagnostic) String() string {
	return Pos{d.File, d.Line, d.Col}.String() + ": " + d.Severity + ": " + d.Message
}

// Diagnostics lists a file's warnings and errors (Load's) together, in
// line order.
func Diagnostics(warns []Warning, err error) []Diagnostic {
	var out []Diagnostic
	for _, w := range warns {
		out = append(out, Diagnostic{w.Pos.File, w.Pos.Line, w.Pos.Col, "warning", w.Key, w.Msg})
	}
	var list Errors
	var one *Error
	switch {
	case errors.As(err, &list):
	case errors.As(err, &one):
		list = Errors{one}
	case err != nil:
		out = append(out, Diagnostic{Severity: "error", Message: err.Error()})
	}
	for _, e := range list {
		out = append(out, Diagnostic{e.Pos.File, e.Pos.Line, e.Pos.Col, "error", "", e.Msg})
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Line < b.Line || (a.Line == b.Line && a.Col < b.Col)
	})
	return out
}

// ErrorCount is how many errors err holds (Errors or one).
func ErrorCount(err error) int {
	var list Errors
	switch {
	case errors.As(err, &list):
		return len(list)
	case err != nil:
		return 1
	}
	return 0
}
