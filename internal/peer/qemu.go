package peer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// QEMUCreds writes a credentials directory for QEMU's tls-creds-x509
// object (ca-cert.pem plus ENDPOINT-cert.pem and ENDPOINT-key.pem, endpoint
// "server" or "client"), readable only by uid:gid. The key is minted for
// this one migration and the certificate expires within the hour: the
// files must be readable by the unprivileged QEMU user, so they never hold
// the host's own key, and the caller removes them once QEMU has loaded
// them. The certificate carries the host certificate's names, so the other
// side's hostname check passes exactly as it does for the daemon.
func QEMUCreds(f Files, dir, endpoint string, uid, gid int) error {
	ca, caKey, err := loadCA(f)
	if err != nil {
		return fmt.Errorf("loading the CA: %w", err)
	}
	hb, err := os.ReadFile(f.Cert())
	if err != nil {
		return fmt.Errorf("reading this host's certificate (run `ringfence host trust`): %w", err)
	}
	hp, _ := pem.Decode(hb)
	if hp == nil {
		return fmt.Errorf("%s holds no certificate", f.Cert())
	}
	hostCert, err := x509.ParseCertificate(hp.Bytes)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hostCert.Subject.CommonName + " migration"},
		NotBefore:    time.Now().Add(-5 * time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		// GnuTLS (QEMU) wants key encipherment next to signatures.
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    hostCert.DNSNames,
		IPAddresses: hostCert.IPAddresses,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(f.CA())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	files := map[string][]byte{
		"ca-cert.pem":          caPEM,
		endpoint + "-cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		endpoint + "-key.pem":  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}
	if endpoint == "server" {
		// Without it QEMU generates Diffie-Hellman parameters while
		// loading the credentials: 160-460 ms of CPU here, on the
		// migration's critical path. The standard group costs nothing.
		files["dh-params.pem"] = []byte(ffdhe2048)
	}
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o400); err != nil {
			return err
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	return os.Chown(dir, uid, gid)
}

// ffdhe2048 is RFC 7919's 2048-bit finite-field group as PKCS#3 parameters
// (`openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048`): a
// public, vetted group, as TLS itself uses, instead of parameters QEMU
// would generate on every load.
const ffdhe2048 = `-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
`
