package peer

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/names"
	"github.com/ringfence/ringfence/internal/safefile"
)

// Role is what this host is in the trust model.
type Role string

const (
	RoleNone      Role = ""          // no certificate yet
	RoleAuthority Role = "authority" // holds the CA key and the peer list
	RoleMember    Role = "member"    // joined with a token
	RoleOffline   Role = "offline"   // shares the CA key, no list
)

// Trust is this host's trust state: its certificate, the CA, the peer
// list and, on the authority, the CA key and join tokens. Every change
// goes through it (the daemon's routes), and the TLS configurations it
// hands out read it at each handshake, so a join, renewal or revocation
// takes effect without a restart.
type Trust struct {
	f      Files
	log    *slog.Logger
	listen string // this host's peer listener address ("" = none)

	mu      sync.RWMutex
	role    Role
	cert    *tls.Certificate
	ca      *x509.Certificate
	pool    *x509.CertPool
	caKey   *ecdsa.PrivateKey // authority and offline holders only
	list    *List
	signed  Signed
	auth    authorityRef      // members: where the authority is
	tokens  map[string]*token // authority: join tokens by hash of secret
	pulling time.Time         // last pull asked for (rate limit)
	joining bool              // a join is talking to the authority
}

// authorityRef is what a member knows of its authority.
type authorityRef struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// state is trust.json.
type state struct {
	Role      Role         `json:"role"`
	Authority authorityRef `json:"authority,omitzero"`
}

// Open loads the trust state in f (nothing there is fine: RoleNone).
func Open(f Files, listen string, log *slog.Logger) (*Trust, error) {
	t := &Trust{f: f, log: log, listen: listen, tokens: map[string]*token{}}
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := t.load(); err != nil {
		return nil, fmt.Errorf("loading this host's trust state from %s: %w", f.Dir, err)
	}
	return t, nil
}

func (t *Trust) load() error {
	t.role, t.cert, t.ca, t.pool, t.caKey, t.list, t.auth = RoleNone, nil, nil, nil, nil, nil, authorityRef{}
	b, err := os.ReadFile(t.f.State())
	if errors.Is(err, os.ErrNotExist) {
		return nil // never trusted, or an interrupted attempt: untrusted
	}
	if err != nil {
		return err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("%s: %w", t.f.State(), err)
	}
	cert, err := keyPair(t.f)
	if err != nil {
		return err
	}
	ca, err := readCert(t.f.CA())
	if err != nil {
		return err
	}
	t.cert, t.ca, t.auth = cert, ca, st.Authority
	t.pool = x509.NewCertPool()
	t.pool.AddCert(ca)
	switch st.Role {
	case RoleAuthority, RoleOffline:
		if t.caKey, err = readKey(t.f.CAKey()); err != nil {
			return fmt.Errorf("the CA key of a %s: %w", st.Role, err)
		}
	case RoleMember:
	default:
		return fmt.Errorf("%s: unknown role %q", t.f.State(), st.Role)
	}
	t.role = st.Role
	if t.role != RoleOffline {
		b, err := os.ReadFile(t.f.List())
		if err != nil {
			return fmt.Errorf("reading the peer list: %w", err)
		}
		var s Signed
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("%s: %w", t.f.List(), err)
		}
		l, err := s.Verify(ca)
		if err != nil {
			return fmt.Errorf("%s: %w", t.f.List(), err)
		}
		t.list, t.signed = l, s
	}
	if t.role == RoleAuthority {
		return t.loadTokens()
	}
	return nil
}

// commitState writes trust.json, the last step of becoming trusted.
func (t *Trust) commitState(st state) error {
	b, _ := json.Marshal(st)
	if err := safefile.WriteFile(t.f.State(), b, 0o600); err != nil {
		return err
	}
	return t.load()
}

// name is this host's peer name (its certificate's CN).
func (t *Trust) name() string {
	if t.cert == nil {
		return ""
	}
	return t.cert.Leaf.Subject.CommonName
}

// Status is what `info` shows of this host's trust.
func (t *Trust) Status() *api.PeerStatus {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.cert == nil {
		return nil
	}
	leaf := t.cert.Leaf
	st := &api.PeerStatus{Role: string(t.role), Name: leaf.Subject.CommonName, Serial: SerialHex(leaf.SerialNumber),
		NotAfter: leaf.NotAfter, Names: append(append([]string(nil), leaf.DNSNames...), IPStrings(leaf.IPAddresses)...),
		CAFingerprint: Fingerprint(t.ca.Raw)}
	if t.list != nil {
		st.ListVersion, st.Members, st.Authority = t.list.Version, len(t.list.Members), t.list.Authority
	}
	if days := time.Until(leaf.NotAfter).Hours() / 24; days < 30 {
		st.Warning = fmt.Sprintf("this host's certificate expires in %.0f days: run `ringfence host renew`", days)
	}
	if t.role == RoleOffline {
		st.Warning = "offline trust: this host holds the CA key and accepts any certificate the CA signed; there is no peer list and no revocation (use `ringfence host token` / `host join`)"
	}
	return st
}

// IPStrings writes addresses as text.
func IPStrings(ips []net.IP) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

// Init makes this host trusted: a new CA (this host becomes the
// authority, or an offline holder with offline), or, with caFrom, a copy
// of an offline CA. name is the peer name (default: the hostname), sans
// the names and addresses peers reach it by.
func (t *Trust) Init(name string, sans []string, offline bool, caFrom string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cert != nil {
		return api.Errorf(api.ErrConflict, "this host is already trusted as %q (%s); `ringfence host renew` makes a new certificate", t.name(), t.role)
	}
	if t.joining {
		return api.Errorf(api.ErrConflict, "a join is in progress")
	}
	name, sans, err := hostNames(name, sans)
	if err != nil {
		return err
	}
	if caFrom != "" {
		if err := checkCopiableCA(caFrom); err != nil {
			return err
		}
		offline = true
	}
	// Build everything in a scratch dir, then move it in: a failure
	// leaves this host untrusted, not half-trusted.
	tmp, err := os.MkdirTemp(t.f.Dir, ".init-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	nf := Files{Dir: tmp}
	if err := t.buildTrust(nf, name, sans, offline, caFrom); err != nil {
		return err
	}
	if err := t.moveTrustIn(nf); err != nil {
		return err
	}
	role := RoleAuthority
	if offline {
		role = RoleOffline
	}
	if err := t.commitState(state{Role: role}); err != nil {
		return err
	}
	if offline {
		t.log.Warn("offline trust: this host shares the CA key; any certificate it signs is accepted, with no peer list or revocation")
	}
	t.log.Info("this host is trusted", "name", name, "role", t.role)
	return nil
}

// checkCopiableCA refuses to copy a managed CA (an authority's or a
// member's: its hosts join with tokens) and checks an offline one reads.
func checkCopiableCA(caFrom string) error {
	src := Files{Dir: caFrom}
	var sst state
	b, _ := os.ReadFile(src.State())
	json.Unmarshal(b, &sst)
	if _, lerr := os.Stat(src.List()); sst.Role == RoleAuthority || sst.Role == RoleMember || lerr == nil {
		return api.Errorf(api.ErrInvalid, "%s holds a managed CA (its hosts join with tokens): copying its key would bypass its peer list; run `ringfence host token` on that host and `ringfence host join TOKEN` here", caFrom)
	}
	if _, _, err := loadCA(src); err != nil {
		return api.Errorf(api.ErrInvalid, "reading the CA to copy from %s: %v", caFrom, err)
	}
	return nil
}

// buildTrust writes into nf a CA (copied from caFrom, or new), this
// host's key and certificate, and, unless offline, a list of one member:
// this host, the authority.
func (t *Trust) buildTrust(nf Files, name string, sans []string, offline bool, caFrom string) error {
	if caFrom != "" {
		if err := copyCA(Files{Dir: caFrom}, nf); err != nil {
			return err
		}
	} else if err := newCA(nf); err != nil {
		return err
	}
	ca, caKey, err := loadCA(nf)
	if err != nil {
		return err
	}
	key, der, err := csr(name, sans)
	if err != nil {
		return err
	}
	req, err := parseCSR(der)
	if err != nil {
		return api.Errorf(api.ErrInvalid, "%v", err)
	}
	certDER, err := issue(ca, caKey, req)
	if err != nil {
		return err
	}
	if err := writeKeyCert(nf, key, certDER); err != nil {
		return err
	}
	if offline {
		return nil
	}
	cert, _ := x509.ParseCertificate(certDER)
	l := &List{Version: 1, Issued: time.Now().UTC(), Authority: name, Members: []Member{{Name: name, Serial: SerialHex(cert.SerialNumber), NotAfter: cert.NotAfter,
		Authority: true, Addr: t.listen, JoinedAt: time.Now().UTC(), Names: certNames(cert)}}}
	return writeList(nf, l, caKey)
}

// copyCA copies the CA's certificate and key from src to dst.
func copyCA(src, dst Files) error {
	for _, p := range [][2]string{{src.CA(), dst.CA()}, {src.CAKey(), dst.CAKey()}} {
		b, err := os.ReadFile(p[0])
		if err != nil {
			return err
		}
		if err := safefile.WriteFile(p[1], b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// moveTrustIn renames what buildTrust made in nf into this host's trust
// dir (what exists of it: an offline CA has no list).
func (t *Trust) moveTrustIn(nf Files) error {
	for _, p := range [][2]string{{nf.CA(), t.f.CA()}, {nf.CAKey(), t.f.CAKey()}, {nf.List(), t.f.List()}, {nf.Cert(), t.f.Cert()}} {
		if _, err := os.Stat(p[0]); err == nil {
			if err := os.Rename(p[0], p[1]); err != nil {
				return err
			}
		}
	}
	safefile.SyncDir(t.f.Dir)
	return nil
}

// hostNames defaults and checks a peer name and its SANs.
func hostNames(name string, sans []string) (string, []string, error) {
	if name == "" {
		name, _ = os.Hostname()
	}
	if err := names.Check("host", name); err != nil {
		return "", nil, api.Errorf(api.ErrInvalid, "%v; pass --peer-name", err)
	}
	out := []string{name}
	for _, s := range sans {
		if err := checkSAN(s); err != nil {
			return "", nil, api.Errorf(api.ErrInvalid, "--name: %v", err)
		}
		if s != name {
			out = append(out, s)
		}
	}
	return name, out, nil
}

// writeKeyCert writes a certificate and its key to one file, in one
// rename.
func writeKeyCert(f Files, key *ecdsa.PrivateKey, certDER []byte) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	b := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})...)
	return safefile.WriteFile(f.Cert(), b, 0o600)
}

// certNames are a certificate's host names and addresses.
func certNames(c *x509.Certificate) []string {
	return append(append([]string(nil), c.DNSNames...), IPStrings(c.IPAddresses)...)
}

func writeList(f Files, l *List, key *ecdsa.PrivateKey) error {
	s, err := sign(l, key)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(s)
	return safefile.WriteFile(f.List(), b, 0o600)
}

// ServerConfig is the peer listener's TLS: TLS 1.3, this host's current
// certificate, client certificates verified against the CA and then the
// peer list when given (none given: an anonymous caller, who can only
// join with a token).
func (t *Trust) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			t.mu.RLock()
			defer t.mu.RUnlock()
			if t.cert == nil {
				return nil, errors.New("this host has no certificate yet (`ringfence host trust` or `host join`)")
			}
			return &tls.Config{
				MinVersion:       tls.VersionTLS13,
				Certificates:     []tls.Certificate{*t.cert},
				ClientCAs:        t.pool,
				ClientAuth:       tls.VerifyClientCertIfGiven,
				VerifyConnection: t.checkPeer,
			}, nil
		},
	}
}

// checkPeer admits the other side's certificate (already verified against
// the CA) only if the peer list has it.
func (t *Trust) checkPeer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil // anonymous: the routes decide
	}
	t.mu.RLock()
	l := t.list
	t.mu.RUnlock()
	if l == nil {
		return nil // offline: the CA's signature is the whole check
	}
	if err := l.Allows(cs.PeerCertificates[0]); err != nil {
		t.log.Warn("refused a peer certificate", "err", err)
		t.pullSoon()
		return err
	}
	return nil
}

// ClientConfig is the TLS to dial a peer the admin named by address: the
// certificate must be for host (a name or IP in it) and on the list.
func (t *Trust) ClientConfig(host string) (*tls.Config, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.cert == nil {
		return nil, api.Errorf(api.ErrUnavailable, "this host has no peer certificate: run `ringfence host trust` (first host) or `ringfence host join TOKEN`")
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{*t.cert},
		RootCAs:          t.pool,
		ServerName:       host,
		VerifyConnection: t.checkPeer,
	}, nil
}

// memberConfig dials a known peer by its name (list pushes, pulls,
// renewals): the address may be one its certificate does not carry, so
// the check is the CA, the name and the list.
func (t *Trust) memberConfig(name string) (*tls.Config, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.cert == nil {
		return nil, errors.New("this host has no certificate")
	}
	pool := t.pool
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{*t.cert},
		InsecureSkipVerify: true, // checked below, by name instead of address
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the peer sent no certificate")
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return err
			}
			if leaf.Subject.CommonName != name {
				return fmt.Errorf("expected host %q, the certificate is for %q", name, leaf.Subject.CommonName)
			}
			return t.checkPeer(cs)
		},
	}, nil
}

// Peers is `host peers`: the list this host holds.
func (t *Trust) Peers() (api.PeerList, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.cert == nil {
		return api.PeerList{}, api.Errorf(api.ErrNotFound, "this host is not trusted yet: run `ringfence host trust` or `ringfence host join TOKEN`")
	}
	out := api.PeerList{Role: string(t.role), Self: t.name()}
	if t.list == nil {
		return out, nil
	}
	out.Version, out.Authority = t.list.Version, t.list.Authority
	out.Peers = append(out.Peers, t.list.Members...)
	sort.Slice(out.Peers, func(i, j int) bool { return out.Peers[i].Name < out.Peers[j].Name })
	return out, nil
}

// portOf is the port of a listen address.
func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// postJSON sends in to a peer's route over TLS cfg and decodes out.
func postJSON(ctx context.Context, cfg *tls.Config, method, addr, path string, in, out any) error {
	return doJSON(ctx, cfg, method, "https://"+addr+api.Version+path, in, out)
}
