package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"

	"github.com/ringfence/ringfence/internal/client"
	"github.com/ringfence/ringfence/internal/selfsign"
)

// The client's own certificate (client.crt, client.key next to the
// remotes file, 0600), made on first use: bound to a token on a remote
// (`remote add --client-cert`), it stands for the token there, and the
// token's secret need not be kept.

// clientCertificate loads the client's certificate, making it if needed;
// it returns it with its PEM.
func clientCertificate() (tls.Certificate, string, error) {
	p, err := remotesPath()
	if err != nil {
		return tls.Certificate{}, "", err
	}
	dir := filepath.Dir(p)
	crt, key := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	if _, err := os.Stat(crt); errors.Is(err, os.ErrNotExist) {
		if err := makeClientCertificate(crt, key); err != nil {
			return tls.Certificate{}, "", fmt.Errorf("making the client certificate: %w", err)
		}
	}
	cert, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("the client certificate: %w", err)
	}
	return cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})), nil
}

func makeClientCertificate(crt, key string) error {
	name := "ringfence client"
	if u, err := user.Current(); err == nil {
		hn, _ := os.Hostname()
		name = u.Username + "@" + hn
	}
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: name}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	return selfsign.Write(tmpl, crt, key)
}

// bindClientCert binds the client's certificate to the token c uses and
// checks the remote then takes the certificate alone.
func bindClientCert(c *client.Client, url, pin string) error {
	cert, certPEM, err := clientCertificate()
	if err != nil {
		return err
	}
	if _, err := c.BindCertificate(context.Background(), certPEM); err != nil {
		return fmt.Errorf("binding the client certificate (nothing saved): %w", err)
	}
	cc, err := client.NewRemoteCert(url, pin, cert)
	if err != nil {
		return err
	}
	if _, err := cc.List(context.Background()); err != nil {
		return fmt.Errorf("the remote refused the client certificate (nothing saved): %w", err)
	}
	return nil
}

// remoteClient is the client of a saved remote.
func remoteClient(r remote) (*client.Client, error) {
	if !r.ClientCert {
		return client.NewRemote(r.URL, r.Token, r.Fingerprint)
	}
	cert, _, err := clientCertificate()
	if err != nil {
		return nil, err
	}
	return client.NewRemoteCert(r.URL, r.Fingerprint, cert)
}
