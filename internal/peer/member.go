package peer

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/safefile"
)

// PullInterval is how often a member fetches the list from its authority
// (pushes make changes immediate; the pull catches missed pushes).
const PullInterval = time.Minute

// JoinWith joins this host to the authority named in a token: a new key
// made here (it never leaves), a certificate for it, the CA and the list.
// The lock is not held across the network: a join in progress is marked,
// so a second one (or a trust) is refused meanwhile.
func (t *Trust) JoinWith(ctx context.Context, tok, name string, sans []string) error {
	b, err := decodeToken(tok)
	if err != nil {
		return err
	}
	if err := t.beginJoin(); err != nil {
		return err
	}
	defer func() { t.mu.Lock(); t.joining = false; t.mu.Unlock() }()

	if name == "" && b.Name != "" {
		name = b.Name
	}
	name, sans, err = hostNames(name, sans)
	if err != nil {
		return err
	}
	key, der, err := csr(name, sans)
	if err != nil {
		return err
	}
	rep, err := t.askToJoin(ctx, b, der)
	if err != nil {
		return err
	}
	cert, err := checkJoinReply(b, rep)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.writeMember(key, cert, rep); err != nil {
		return err
	}
	auth := authorityRef{Name: b.Authority, Addr: b.Addr}
	if err := t.commitState(state{Role: RoleMember, Authority: auth}); err != nil {
		return err
	}
	t.log.Info("joined", "name", name, "authority", auth.Name, "addr", auth.Addr)
	return nil
}

// beginJoin marks a join in progress, unless this host is trusted or
// joining already.
func (t *Trust) beginJoin() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.cert != nil:
		return api.Errorf(api.ErrConflict, "this host is already trusted as %q (%s): nothing changed", t.name(), t.role)
	case t.joining:
		return api.Errorf(api.ErrConflict, "a join is already in progress")
	}
	t.joining = true
	return nil
}

// askToJoin sends the CSR der to the token's authority, which must hold
// the token's CA and name.
func (t *Trust) askToJoin(ctx context.Context, b tokenBody, der []byte) (JoinReply, error) {
	var rep JoinReply
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// No CA yet: the token says which CA the authority's certificate
		// must chain to, and the authority's name.
		InsecureSkipVerify: true,
		VerifyConnection:   pinnedAuthority(b.Fingerprint, b.Authority),
	}
	if err := postJSON(ctx, cfg, "POST", b.Addr, "/peer/join", JoinCall{Secret: b.Secret, CSR: der, Addr: t.listen}, &rep); err != nil {
		return rep, fmt.Errorf("joining through %s: %w", b.Addr, err)
	}
	return rep, nil
}

// checkJoinReply checks the authority's reply against the token: its CA,
// the certificate it signed, and a list of that authority that has it.
func checkJoinReply(b tokenBody, rep JoinReply) (*x509.Certificate, error) {
	ca, err := parsePEMCert(rep.CA)
	if err != nil || Fingerprint(ca.Raw) != b.Fingerprint {
		return nil, api.Errorf(api.ErrInvalid, "the authority sent a CA that does not match the token")
	}
	cert, err := parsePEMCert(rep.Cert)
	if err != nil {
		return nil, err
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("the certificate from the authority: %w", err)
	}
	l, err := rep.List.Verify(ca)
	if err != nil {
		return nil, err
	}
	if l.Authority != b.Authority || rep.Authority != b.Authority {
		return nil, api.Errorf(api.ErrInvalid, "the list's authority is %q, the token's %q", l.Authority, b.Authority)
	}
	if err := l.Allows(cert); err != nil {
		return nil, fmt.Errorf("the authority's list does not have this host: %w", err)
	}
	return cert, nil
}

// writeMember writes what the authority sent (the CA, the list) and this
// host's key and certificate; t.mu is held.
func (t *Trust) writeMember(key *ecdsa.PrivateKey, cert *x509.Certificate, rep JoinReply) error {
	lb, _ := json.Marshal(rep.List)
	for _, w := range []struct {
		path string
		b    []byte
	}{{t.f.CA(), rep.CA}, {t.f.List(), lb}} {
		if err := safefile.WriteFile(w.path, w.b, 0o600); err != nil {
			return err
		}
	}
	return writeKeyCert(t.f, key, cert.Raw)
}

// pinnedAuthority accepts a server whose certificate is for the named
// authority and chains to the CA with the given fingerprint, which it
// must send along. Another host of the same CA (a member, a revoked one)
// is refused: it could take the token.
func pinnedAuthority(fp, authority string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the authority sent no certificate")
		}
		pool := x509.NewCertPool()
		found := false
		for _, c := range cs.PeerCertificates[1:] {
			if Fingerprint(c.Raw) == fp {
				pool.AddCert(c)
				found = true
			}
		}
		if !found {
			return errors.New("the host at the token's address does not hold the token's CA: wrong address, or someone in between")
		}
		leaf := cs.PeerCertificates[0]
		if leaf.Subject.CommonName != authority {
			return fmt.Errorf("the host at the token's address is %q, not the authority %q", leaf.Subject.CommonName, authority)
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		return err
	}
}

func parsePEMCert(b []byte) (*x509.Certificate, error) {
	p, _ := pem.Decode(b)
	if p == nil || p.Type != "CERTIFICATE" {
		return nil, errors.New("no certificate in the reply")
	}
	return x509.ParseCertificate(p.Bytes)
}

// Renew gives this host a new key and certificate: from its own CA on the
// authority (or an offline holder), else from the authority over mutual
// TLS with the current certificate.
func (t *Trust) Renew(ctx context.Context) error {
	t.mu.RLock()
	role, auth, cur := t.role, t.auth, t.cert
	t.mu.RUnlock()
	if cur == nil {
		return api.Errorf(api.ErrUnavailable, "this host has no certificate to renew: `ringfence host trust` or `host join`")
	}
	leaf := cur.Leaf
	sans := append(append([]string(nil), leaf.DNSNames...), IPStrings(leaf.IPAddresses)...)
	key, der, err := csr(leaf.Subject.CommonName, sans)
	if err != nil {
		return err
	}
	if role == RoleMember {
		cfg, err := t.memberConfig(auth.Name)
		if err != nil {
			return err
		}
		var rep RenewReply
		if err := postJSON(ctx, cfg, "POST", auth.Addr, "/peer/renew", RenewCall{CSR: der}, &rep); err != nil {
			return fmt.Errorf("renewing through the authority %s at %s: %w", auth.Name, auth.Addr, err)
		}
		cert, err := parsePEMCert(rep.Cert)
		if err != nil {
			return err
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if err := cert.CheckSignatureFrom(t.ca); err != nil {
			return fmt.Errorf("the renewed certificate: %w", err)
		}
		if err := t.accept(rep.List); err != nil {
			return err
		}
		if err := writeKeyCert(t.f, key, cert.Raw); err != nil {
			return err
		}
		return t.load()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	req, err := parseCSR(der)
	if err != nil {
		return err
	}
	certDER, err := issue(t.ca, t.caKey, req)
	if err != nil {
		return err
	}
	cert, _ := x509.ParseCertificate(certDER)
	if err := writeKeyCert(t.f, key, certDER); err != nil {
		return err
	}
	if t.role == RoleAuthority {
		m, _ := t.list.find(t.name())
		m.Serial, m.NotAfter = SerialHex(cert.SerialNumber), cert.NotAfter
		// Loaded first so the list is signed with the new name's entry and
		// pushes go out with the new certificate.
		if err := t.load(); err != nil {
			return err
		}
		return t.publish(t.list.with(m))
	}
	return t.load()
}

// Accept takes a signed list (a push, or a pull's answer) if it is the
// CA's and newer than the one held.
func (t *Trust) Accept(s Signed) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.accept(s)
}

func (t *Trust) accept(s Signed) error {
	if t.role != RoleMember {
		return api.Errorf(api.ErrInvalid, "this host (%s) does not take peer lists from others", t.role)
	}
	l, err := s.Verify(t.ca)
	if err != nil {
		return api.Errorf(api.ErrForbidden, "%v", err)
	}
	if l.Version <= t.list.Version {
		return nil // old news
	}
	b, _ := json.Marshal(s)
	if err := safefile.WriteFile(t.f.List(), b, 0o600); err != nil {
		return err
	}
	t.list, t.signed = l, s
	t.log.Info("peer list updated", "version", l.Version, "members", len(l.Members))
	return nil
}

// Pull fetches the list from the authority.
func (t *Trust) Pull(ctx context.Context) error {
	t.mu.RLock()
	role, auth := t.role, t.auth
	t.mu.RUnlock()
	if role != RoleMember {
		return nil
	}
	cfg, err := t.memberConfig(auth.Name)
	if err != nil {
		return err
	}
	var s Signed
	if err := postJSON(ctx, cfg, "GET", auth.Addr, "/peer/list", nil, &s); err != nil {
		return err
	}
	return t.Accept(s)
}

// pullSoon pulls in the background after a refused certificate (a host
// that joined a moment ago), at most every 5 seconds.
func (t *Trust) pullSoon() {
	t.mu.Lock()
	if t.role != RoleMember || time.Since(t.pulling) < 5*time.Second {
		t.mu.Unlock()
		return
	}
	t.pulling = time.Now()
	t.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := t.Pull(ctx); err != nil {
			t.log.Warn("pulling the peer list", "err", err)
		}
	}()
}

// RunSync pulls the list every PullInterval until ctx ends.
func (t *Trust) RunSync(ctx context.Context) {
	tick := time.NewTicker(PullInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := t.Pull(pctx); err != nil {
				t.log.Warn("pulling the peer list from the authority", "err", err)
			}
			cancel()
		}
	}
}

// doJSON is one HTTPS call to another daemon with a JSON body and reply;
// an error reply keeps its class.
func doJSON(ctx context.Context, cfg *tls.Config, method, url string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	tr := &http.Transport{TLSClientConfig: cfg, DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext, TLSHandshakeTimeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e api.ErrorBody
		json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return &api.RemoteError{Message: e.Error, Class: e.Class}
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out)
}

// AuthorityAddr is where a member's authority listens (HOST:PORT; "" on
// an authority or an untrusted host): a joining host finds its cluster there.
func (t *Trust) AuthorityAddr() string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.auth.Addr
}
