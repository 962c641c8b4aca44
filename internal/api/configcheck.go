package api

import "fmt"

// ConfigCheckRequest is a domain file to check (POST /1.0/config/check):
// its text, and the name its diagnostics give it.
type ConfigCheckRequest struct {
	File   string `json:"file"`
	Text   string `json:"text"`
	Strict bool   `json:"strict,omitempty"`
}

// ConfigDiagnostic is one error or warning about a domain file, as a
// linter reads it (`config check --json`).
type ConfigDiagnostic struct {
	File     string `json:"file"`
	Line     int    `json:"line,omitempty"`
	Col      int    `json:"col,omitempty"`
	Severity string `json:"severity"` // error or warning
	Key      string `json:"key,omitempty"`
	Message  string `json:"message"`
}

// String is the diagnostic as `config check` prints it:
// file:line:col: severity: message.
func (d ConfigDiagnostic) String() string {
	pos := d.File
	switch {
	case d.Line == 0:
	case d.File == "":
		pos = fmt.Sprintf("%d:%d", d.Line, d.Col)
	default:
		pos = fmt.Sprintf("%s:%d:%d", d.File, d.Line, d.Col)
	}
	return pos + ": " + d.Severity + ": " + d.Message
}

// ConfigReport is one file's check, as `config check --json` prints it
// and POST /1.0/config/check answers: its diagnostics in line order and,
// when it has no error, the domain it makes (and, from the daemon, a
// summary of it).
type ConfigReport struct {
	File        string             `json:"file"`
	OK          bool               `json:"ok"`
	Diagnostics []ConfigDiagnostic `json:"diagnostics"`
	Spec        *DomainSpec        `json:"spec,omitempty"`
	Summary     []string           `json:"summary,omitempty"`
}
