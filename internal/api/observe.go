package api

import "time"

// APIInfo is GET /1.0: what this daemon's API is, so a client can detect
// features before it uses them.
type APIInfo struct {
	APIVersion string `json:"api_version"` // "1.0"
	Release    string `json:"release"`     // Ringfence's version
	// Extensions name the features beyond the base API this daemon
	// serves (e.g. "audit", "metrics"); a client checks for one before it
	// calls its routes.
	Extensions []string `json:"extensions"`
}

// AuditRecord is one call that changed (or tried to change) something:
// who, from where, what, and how it ended. Records are append-only and
// numbered without gaps.
type AuditRecord struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Principal string    `json:"principal"` // a token's or certificate's name; "root" on the socket
	Kind      string    `json:"kind"`      // local, token, cert, peer, anonymous
	Role      string    `json:"role"`
	Tenant    string    `json:"tenant,omitempty"`
	Remote    string    `json:"remote"` // "unix", or the caller's address
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Status    int       `json:"status"`          // the HTTP status answered (an operation's: as if answered at its end)
	Class     string    `json:"class,omitempty"` // the error's class when it failed
	// Domain is the domain the call named in its path, or its
	// operation's (a create's, an import's), when there is one.
	Domain string `json:"domain,omitempty"`
	// Operation is set on the record of how a call answered 202 ended:
	// its operation's ID (the call's own record says 202).
	Operation string `json:"operation,omitempty"`
}

// ClassOfStatus is the error class an HTTP status stands for ("" for a
// success, "internal" for any other failure).
func ClassOfStatus(code int) string {
	if code < 400 {
		return ""
	}
	for _, c := range classes {
		if c.status == code {
			return c.name
		}
	}
	return "internal"
}
