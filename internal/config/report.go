package config

import (
	"errors"
	"sort"

	"github.com/ringfence/ringfence/internal/api"
)

// Report is one file's check (api.ConfigReport).
type Report = api.ConfigReport

// NewReport is the report of a file's decode (Load's or Decode's result).
func NewReport(file string, spec api.DomainSpec, warns []Warning, err error) Report {
	r := Report{File: file, OK: err == nil, Diagnostics: Diagnostics(warns, err)}
	if r.Diagnostics == nil {
		r.Diagnostics = []Diagnostic{}
	}
	if err == nil {
		r.Spec = &spec
	}
	return r
}

// Diagnostic is one error or warning about a file (api.ConfigDiagnostic:
// the daemon's check answers the same).
type Diagnostic = api.ConfigDiagnostic

// Diagnostics lists a file's warnings and errors (Load's) together, in
// line order.
func Diagnostics(warns []Warning, err error) []Diagnostic {
	var out []Diagnostic
	for _, w := range warns {
		out = append(out, Diagnostic{File: w.Pos.File, Line: w.Pos.Line, Col: w.Pos.Col, Severity: "warning", Key: w.Key, Message: w.Msg})
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
		out = append(out, Diagnostic{File: e.Pos.File, Line: e.Pos.Line, Col: e.Pos.Col, Severity: "error", Message: e.Msg})
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
