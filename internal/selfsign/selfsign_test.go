package selfsign

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	crt, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := Write(&x509.Certificate{Subject: pkix.Name{CommonName: "x"}, DNSNames: []string{"x"}}, crt, key); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{crt, key} {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st, err)
		}
	}
	c, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(c.Certificate[0])
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || leaf.Subject.CommonName != "x" || leaf.SerialNumber.Sign() <= 0 {
		t.Fatalf("%+v", leaf)
	}
}
