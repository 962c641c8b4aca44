package peer

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ringfence/ringfence/internal/api"
	"strings"
	"time"
)

// Member is one trusted host on the peer list: the wire type, as the
// list travels between daemons and is shown by `host peers` as it is.
type Member = api.Peer

// List is the set of trusted hosts, as the authority issued it. Version
// only grows: a host takes a list only when it is newer than its own.
type List struct {
	Version   int64     `json:"version"`
	Issued    time.Time `json:"issued"`
	Authority string    `json:"authority"`
	Members   []Member  `json:"members"`
}

// find returns the member with name.
// claimant returns the member (other than name) whose certificate carries
// any of names.
func (l *List) claimant(name string, names []string) (string, string) {
	for _, m := range l.Members {
		if m.Name == name {
			continue
		}
		for _, a := range m.Names {
			for _, b := range names {
				if strings.EqualFold(a, b) {
					return m.Name, b
				}
			}
		}
	}
	return "", ""
}

func (l *List) find(name string) (Member, bool) {
	for _, m := range l.Members {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// Allows reports whether a certificate is a current member's: its name
// and its serial both match (a renewed host's old certificate no longer
// does; a revoked host is no longer listed). The authority's own name is
// allowed with any certificate of the CA: only the CA key's holder can
// mint one, and members must keep reaching it after it renews (the list
// they hold still has its old serial until they fetch the new one).
func (l *List) Allows(cert *x509.Certificate) error {
	if cert.Subject.CommonName == l.Authority {
		return nil
	}
	m, ok := l.find(cert.Subject.CommonName)
	if !ok {
		return fmt.Errorf("host %q is not on this host's peer list (never joined, or revoked)", cert.Subject.CommonName)
	}
	if m.Serial != SerialHex(cert.SerialNumber) {
		return fmt.Errorf("the certificate of host %q (serial %s) is not its current one (%s): renewed or replaced", m.Name, SerialHex(cert.SerialNumber), m.Serial)
	}
	return nil
}

// Signed is a list with the authority's signature over its exact bytes:
// members verify it with the CA certificate, so a list can travel through
// any peer (or be pushed by anyone) without being forgeable.
type Signed struct {
	List []byte `json:"list"` // JSON of List
	Sig  []byte `json:"sig"`  // ECDSA P-256 over SHA-256(List), by the CA key
}

func sign(l *List, key *ecdsa.PrivateKey) (Signed, error) {
	b, err := json.Marshal(l)
	if err != nil {
		return Signed{}, err
	}
	h := sha256.Sum256(b)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	return Signed{List: b, Sig: sig}, err
}

// Verify checks s against the CA and returns the list.
func (s Signed) Verify(ca *x509.Certificate) (*List, error) {
	pub, ok := ca.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("the CA key is not ECDSA")
	}
	h := sha256.Sum256(s.List)
	if !ecdsa.VerifyASN1(pub, h[:], s.Sig) {
		return nil, errors.New("peer list: the signature does not match the CA")
	}
	var l List
	if err := json.Unmarshal(s.List, &l); err != nil {
		return nil, fmt.Errorf("peer list: %w", err)
	}
	return &l, nil
}
