package peer

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
)

// QEMU's credentials: a certificate signed by our CA for each endpoint, and
// for the server the standard DH group, so QEMU does not generate one.
func TestQEMUCreds(t *testing.T) {
	dir := t.TempDir()
	f := Files{Dir: filepath.Join(dir, "tls")}
	tr, err := Open(f, "", slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Init("h1", []string{"127.0.0.1", "localhost"}, false, ""); err != nil {
		t.Fatal(err)
	}
	for _, ep := range []string{"server", "client"} {
		out := filepath.Join(dir, ep)
		if err := QEMUCreds(f, out, ep, os.Getuid(), os.Getgid()); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(out, ep+"-cert.pem"))
		if err != nil {
			t.Fatal(err)
		}
		p, _ := pem.Decode(b)
		cert, err := x509.ParseCertificate(p.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		ca, _, err := loadCA(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := cert.CheckSignatureFrom(ca); err != nil {
			t.Fatalf("%s cert not signed by the CA: %v", ep, err)
		}
		dh, err := os.ReadFile(filepath.Join(out, "dh-params.pem"))
		if ep == "client" {
			if err == nil {
				t.Fatal("a client needs no DH parameters")
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(dh)
		var params struct{ P, G *big.Int }
		if blk == nil || blk.Type != "DH PARAMETERS" {
			t.Fatalf("dh-params.pem: %q", dh)
		}
		if _, err := asn1.Unmarshal(blk.Bytes, &params); err != nil || params.P.BitLen() != 2048 || params.G.Int64() != 2 || !params.P.ProbablyPrime(10) {
			t.Fatalf("DH parameters: %v, %d bits, g=%v", err, params.P.BitLen(), params.G)
		}
	}
}
