package api

import "time"

// APITokenRequest makes an API token (POST /1.0/tokens).
type APITokenRequest struct {
	Name   string `json:"name"`
	Role   string `json:"role"`
	Tenant string `json:"tenant,omitempty"`
	// ExpiresSec is the token's lifetime in seconds (0: it never expires).
	ExpiresSec int64 `json:"expires_sec,omitempty"`
	// Password lets a person sign in to the web admin as the token's
	// identity (user NAME, this password; at least 12 characters); kept
	// only as a salted PBKDF2 hash.
	Password string `json:"password,omitempty"`
}

// APIToken is a token as listed: never its secret.
type APIToken struct {
	Name     string    `json:"name"`
	Role     string    `json:"role"`
	Tenant   string    `json:"tenant,omitempty"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires,omitzero"`
	LastUsed time.Time `json:"last_used,omitzero"`
	Revoked  time.Time `json:"revoked,omitzero"`
	// Certificates are the SHA-256 (hex) of the client certificates
	// bound to the token.
	Certificates []string `json:"certificates,omitempty"`
	// Password: a web admin sign-in password is set (user NAME).
	Password bool `json:"password,omitempty"`
}

// APICertRequest binds a client certificate (PEM) to the caller's token
// (POST /1.0/tokens/certificates).
type APICertRequest struct {
	Certificate string `json:"certificate"`
}

// APITokenCreated is the reply to a token's creation: the only time its
// secret is shown.
type APITokenCreated struct {
	APIToken
	Secret string `json:"secret"`
}
