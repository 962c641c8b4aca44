// Package peer is how daemons talk to each other: HTTPS with mutual TLS,
// where trust means "holds a certificate signed by the same Ringfence CA".
// `ringfence host trust` makes the CA (or takes one copied from a host that
// has it) and this host's certificate.
package peer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files of a TLS dir.
type Files struct{ Dir string }

func (f Files) CA() string      { return filepath.Join(f.Dir, "ca.pem") }
func (f Files) CAKey() string   { return filepath.Join(f.Dir, "ca-key.pem") }
func (f Files) Cert() string    { return filepath.Join(f.Dir, "host.pem") }
func (f Files) CertKey() string { return filepath.Join(f.Dir, "host-key.pem") }

// Trust makes this host's CA (unless one is there or caDir gives one to
// copy) and issues the host certificate for names (hostnames/IPs).
func Trust(f Files, caDir string, names []string) error {
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return err
	}
	if caDir != "" {
		src := Files{Dir: caDir}
		for _, p := range [][2]string{{src.CA(), f.CA()}, {src.CAKey(), f.CAKey()}} {
			b, err := os.ReadFile(p[0])
			if err != nil {
				return fmt.Errorf("reading the CA to trust: %w", err)
			}
			if err := os.WriteFile(p[1], b, 0o600); err != nil {
				return err
			}
		}
	}
	if _, err := os.Stat(f.CA()); errors.Is(err, os.ErrNotExist) {
		if err := newCA(f); err != nil {
			return err
		}
	}
	return issue(f, names)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func newCA(f Files) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "Ringfence CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
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

func loadCA(f Files) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(f.CA())
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(f.CAKey())
	if err != nil {
		return nil, nil, err
	}
	cp, _ := pem.Decode(cb)
	kp, _ := pem.Decode(kb)
	if cp == nil || kp == nil {
		return nil, nil, errors.New("malformed CA files")
	}
	cert, err := x509.ParseCertificate(cp.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kp.Bytes)
	return cert, key, err
}

func issue(f Files, names []string) error {
	ca, caKey, err := loadCA(f)
	if err != nil {
		return fmt.Errorf("loading the CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, n := range append(names, host, "localhost", "127.0.0.1") {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := writePEM(f.CertKey(), "EC PRIVATE KEY", kb); err != nil {
		return err
	}
	return writePEM(f.Cert(), "CERTIFICATE", der)
}

// Config is the mutual-TLS configuration of this host, for both serving
// and dialing: only certificates from our CA are accepted either way.
func Config(f Files) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.Cert(), f.CertKey())
	if err != nil {
		return nil, fmt.Errorf("loading this host's certificate (run `ringfence host trust`): %w", err)
	}
	pool := x509.NewCertPool()
	cb, err := os.ReadFile(f.CA())
	if err != nil || !pool.AppendCertsFromPEM(cb) {
		return nil, fmt.Errorf("loading the CA from %s (run `ringfence host trust`)", f.CA())
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}, nil
}
