// Package peer is how daemons trust each other: mutual TLS with
// certificates from one Ringfence CA, and a peer list the CA's host signs.
//
// Roles (docs/trust-model.md):
//   - the authority: the host that ran `ringfence host trust` first. It
//     alone holds the CA key. It issues certificates to hosts that join
//     with a single-use token, keeps the peer list (who is trusted, by
//     certificate serial), signs it, and sends it to every peer when it
//     changes;
//   - members: hosts that joined. They hold their own key and certificate,
//     the CA certificate and the signed list, never the CA key;
//   - offline holders: hosts set up with `host trust --offline` or
//     `--ca-from DIR`. They share the CA key and have no list: any
//     certificate the CA signed is accepted (the old model, kept for
//     air-gapped set-ups, with a warning).
package peer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/internal/names"
	"github.com/ringfence/ringfence/internal/safefile"
)

// Files of a TLS dir (STATE/tls).
type Files struct{ Dir string }

func (f Files) CA() string    { return filepath.Join(f.Dir, "ca.pem") }
func (f Files) CAKey() string { return filepath.Join(f.Dir, "ca-key.pem") }

// Cert holds this host's certificate and its key together, so a renewal
// replaces both in one rename (never a key that does not match).
func (f Files) Cert() string   { return filepath.Join(f.Dir, "host.pem") }
func (f Files) List() string   { return filepath.Join(f.Dir, "peers.json") }
func (f Files) Tokens() string { return filepath.Join(f.Dir, "tokens.json") }

// State says what this host is (role, and a member's authority); it is
// written last, so files left by an interrupted trust, join or copy are
// ignored until it says they count.
func (f Files) State() string { return filepath.Join(f.Dir, "trust.json") }

// CertValidity is how long a host certificate lasts (`host renew` makes
// a new one; `info` shows the expiry).
const CertValidity = 365 * 24 * time.Hour

func writePEM(path, typ string, der []byte) error {
	return safefile.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func newKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n.Add(n, big.NewInt(1))
}

// SerialHex is how serials are written in lists and messages.
func SerialHex(n *big.Int) string { return hex.EncodeToString(n.Bytes()) }

// Fingerprint is the SHA-256 of a certificate's DER, in hex.
func Fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

func newCA(f Files) error {
	key, err := newKey()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Ringfence CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := writePEM(f.CAKey(), "EC PRIVATE KEY", kb); err != nil {
		return err
	}
	return writePEM(f.CA(), "CERTIFICATE", der)
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, _ := pem.Decode(b)
	if p == nil || p.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no certificate", path)
	}
	return x509.ParseCertificate(p.Bytes)
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, _ := pem.Decode(b)
	if p == nil {
		return nil, fmt.Errorf("%s holds no key", path)
	}
	return x509.ParseECPrivateKey(p.Bytes)
}

func loadCA(f Files) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cert, err := readCert(f.CA())
	if err != nil {
		return nil, nil, err
	}
	key, err := readKey(f.CAKey())
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// csr makes a key and a certificate request for a host: CN is its peer
// name, the SANs the names and addresses others reach it by.
func csr(name string, sans []string) (*ecdsa.PrivateKey, []byte, error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}
	for _, n := range sans {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	return key, der, err
}

// checkSAN is the rule for a certificate's names: an IP address or a DNS
// name made of name-rule labels.
func checkSAN(s string) error {
	if net.ParseIP(s) != nil {
		return nil
	}
	if len(s) > 253 {
		return fmt.Errorf("%q is too long for a host name", s)
	}
	for _, label := range splitDots(s) {
		if !names.Valid(label) {
			return fmt.Errorf("%q is not a host name or IP address", s)
		}
	}
	return nil
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

// issue signs a host certificate for a parsed request (its signature
// checked by the caller).
func issue(ca *x509.Certificate, caKey *ecdsa.PrivateKey, req *x509.CertificateRequest) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: req.Subject.CommonName},
		NotBefore:    time.Now().Add(-5 * time.Minute),
		NotAfter:     time.Now().Add(CertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPAddresses,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca, req.PublicKey, caKey)
}

// parseCSR checks a request's signature and names.
func parseCSR(der []byte) (*x509.CertificateRequest, error) {
	req, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	if err := names.Check("host", req.Subject.CommonName); err != nil {
		return nil, err
	}
	for _, n := range req.DNSNames {
		if err := checkSAN(n); err != nil {
			return nil, err
		}
	}
	if len(req.URIs) > 0 || len(req.EmailAddresses) > 0 {
		return nil, errors.New("certificate request: only host names and IP addresses may be asked for")
	}
	return req, nil
}

// keyPair loads this host's certificate with the CA appended, so a joining
// host (which has no CA yet) can check it against the fingerprint in its
// token.
func keyPair(f Files) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(f.Cert(), f.Cert())
	if err != nil {
		return nil, err
	}
	if ca, err := readCert(f.CA()); err == nil {
		cert.Certificate = append(cert.Certificate, ca.Raw)
	}
	cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	return &cert, err
}
