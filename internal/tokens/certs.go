package tokens

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"slices"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/store"
)

// Client certificates: a token holder may bind a certificate of its own
// (self-signed; its key never leaves the client) to its token, then
// present it instead of the secret. The certificate is the token: same
// role and tenant, refused once the token is revoked or expired.

// CertPrefix indexes bound certificates: tokencerts/SHA256 = token name.
const CertPrefix = "tokencerts/"

// maxCerts is how many certificates one token may have bound.
const maxCerts = 16

// ErrUnknownCert answers a certificate bound to no token.
var ErrUnknownCert = api.Errorf(api.ErrUnauthorized, "unknown client certificate: bind it first (`ringfence remote add ... --client-cert` with a token)")

func certFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// BindCert binds a client certificate (DER) to the token name and returns
// its fingerprint.
func (m *Manager) BindCert(ctx context.Context, name string, der []byte) (string, error) {
	if _, err := x509.ParseCertificate(der); err != nil {
		return "", api.Errorf(api.ErrInvalid, "not a certificate: %v", err)
	}
	fp := certFingerprint(der)
	return fp, m.st.Update(ctx, func(tx store.Tx) error {
		if owner, err := tx.Get(CertPrefix + fp); err == nil && string(owner) != name {
			return api.Errorf(api.ErrConflict, "this certificate is bound to another token")
		}
		err := updateTx(tx, name, func(r *record) error {
			if slices.Contains(r.Certs, fp) {
				return nil
			}
			if len(r.Certs) >= maxCerts {
				return api.Errorf(api.ErrConflict, "token %q has %d certificates bound, the most it may have", name, maxCerts)
			}
			r.Certs = append(r.Certs, fp)
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Put(CertPrefix+fp, []byte(name))
	})
}

// AuthenticateCert returns the principal of the token a client
// certificate (DER) is bound to.
func (m *Manager) AuthenticateCert(ctx context.Context, der []byte, remote string) (auth.Principal, error) {
	fp := certFingerprint(der)
	name, err := m.st.Get(ctx, CertPrefix+fp)
	if err != nil {
		return auth.Principal{}, ErrUnknownCert
	}
	b, err := m.st.Get(ctx, Prefix+string(name))
	var r record
	if err != nil || json.Unmarshal(b, &r) != nil || !slices.Contains(r.Certs, fp) {
		return auth.Principal{}, ErrUnknownCert
	}
	return m.principal(ctx, auth.Cert, string(name), r, remote)
}
