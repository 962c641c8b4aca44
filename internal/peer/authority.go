package peer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/names"
	"github.com/ringfence/ringfence/internal/safefile"
)

// Token lifetimes: minutes, as a join token is typed or pasted right away.
const (
	DefaultTokenTTL = 10 * time.Minute
	MaxTokenTTL     = time.Hour
	tokenPrefix     = "rfjoin1-"
)

// token is the authority's record of one join token (the secret itself is
// never stored, only its hash).
type token struct {
	Name    string    `json:"name,omitempty"` // the host it is for; "" = any name
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	UsedBy  string    `json:"used_by,omitempty"`
	UsedAt  time.Time `json:"used_at,omitzero"`
}

// tokenBody is what a join token carries: where the authority is, the
// fingerprint of the CA (so the joining host can check whom it talks to
// before it has the CA), and the secret.
type tokenBody struct {
	Addr        string `json:"a"`
	Fingerprint string `json:"f"`
	Authority   string `json:"an"` // the authority's name: only its certificate is accepted
	Secret      string `json:"s"`
	Name        string `json:"n,omitempty"`
}

func hashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func encodeToken(b tokenBody) string {
	j, _ := json.Marshal(b)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(j)
}

func decodeToken(s string) (tokenBody, error) {
	var b tokenBody
	bad := api.Errorf(api.ErrInvalid, "this is not a Ringfence join token (it starts with %s; make one with `ringfence host token` on the authority)", tokenPrefix)
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), tokenPrefix)
	if !ok {
		return b, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || json.Unmarshal(raw, &b) != nil || b.Addr == "" || b.Authority == "" || len(b.Fingerprint) != 64 || len(b.Secret) != 64 {
		return b, bad
	}
	return b, nil
}

func (t *Trust) loadTokens() error {
	b, err := os.ReadFile(t.f.Tokens())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(b, &t.tokens)
}

// saveTokens keeps unexpired tokens and, for a day, spent or expired ones
// (so a reuse is told apart from a typo). Caller holds mu.
func (t *Trust) saveTokens() error {
	for h, tk := range t.tokens {
		if time.Since(tk.Expires) > 24*time.Hour {
			delete(t.tokens, h)
		}
	}
	b, _ := json.MarshalIndent(t.tokens, "", "  ")
	return safefile.WriteFile(t.f.Tokens(), b, 0o600)
}

// NewToken makes a single-use join token for a host (name "" = the host
// says its own name), valid for ttl. addr is where joiners reach this
// host ("" = its peer listener).
func (t *Trust) NewToken(name string, ttl time.Duration, addr string) (api.PeerToken, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.role != RoleAuthority {
		return api.PeerToken{}, t.notAuthority("make join tokens")
	}
	if name != "" {
		if err := names.Check("host", name); err != nil {
			return api.PeerToken{}, api.Errorf(api.ErrInvalid, "%v", err)
		}
		if _, ok := t.list.find(name); ok {
			return api.PeerToken{}, api.Errorf(api.ErrConflict, "host %q is already a peer: revoke it first (`ringfence host revoke %s`) or pick another name", name, name)
		}
	}
	switch {
	case ttl == 0:
		ttl = DefaultTokenTTL
	case ttl < 0 || ttl > MaxTokenTTL:
		return api.PeerToken{}, api.Errorf(api.ErrInvalid, "a join token lives at most %s (asked: %s): make one right before joining", MaxTokenTTL, ttl)
	}
	if addr == "" {
		addr = t.advertised()
	}
	if addr == "" {
		return api.PeerToken{}, api.Errorf(api.ErrUnavailable, "this host has no peer listener to join through: restart the daemon with --listen ADDR (or pass --addr HOST:PORT)")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return api.PeerToken{}, api.Errorf(api.ErrInvalid, "--addr %q: want HOST:PORT", addr)
	}
	var sec [32]byte
	rand.Read(sec[:])
	secret := hex.EncodeToString(sec[:])
	now := time.Now().UTC()
	tk := &token{Name: name, Created: now, Expires: now.Add(ttl)}
	t.tokens[hashSecret(secret)] = tk
	if err := t.saveTokens(); err != nil {
		delete(t.tokens, hashSecret(secret))
		return api.PeerToken{}, err
	}
	return api.PeerToken{Token: encodeToken(tokenBody{Addr: addr, Fingerprint: Fingerprint(t.ca.Raw), Authority: t.name(), Secret: secret, Name: name}),
		Name: name, Expires: tk.Expires, Addr: addr}, nil
}

// advertised is the address joiners dial: the listener's, with this
// host's first name when it listens on every address. Caller holds mu.
func (t *Trust) advertised() string {
	if t.listen == "" {
		return ""
	}
	h, p, err := net.SplitHostPort(t.listen)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
		leaf := t.cert.Leaf
		switch {
		case len(leaf.IPAddresses) > 0:
			h = leaf.IPAddresses[0].String()
		case len(leaf.DNSNames) > 0:
			h = leaf.DNSNames[0]
		}
	}
	return net.JoinHostPort(h, p)
}

func (t *Trust) notAuthority(what string) error {
	switch t.role {
	case RoleNone:
		return api.Errorf(api.ErrUnavailable, "this host is not trusted yet: `ringfence host trust` makes it the authority")
	case RoleMember:
		return api.Errorf(api.ErrInvalid, "only the authority (%s, which holds the CA key) can %s; run this there", t.auth.Name, what)
	default:
		return api.Errorf(api.ErrInvalid, "this host has offline trust (a shared CA key, no peer list): it cannot %s", what)
	}
}

// JoinCall is what a joining host sends (anonymously) to the authority.
type JoinCall struct {
	Secret string `json:"secret"`
	CSR    []byte `json:"csr"`  // DER
	Addr   string `json:"addr"` // its peer listener; host "" = the address it calls from
}

// JoinReply is the authority's answer: the certificate, the CA and the
// current list (with the new member on it).
type JoinReply struct {
	Cert      []byte `json:"cert"` // PEM
	CA        []byte `json:"ca"`   // PEM
	List      Signed `json:"list"`
	Authority string `json:"authority"`
}

// Admit is the authority's side of a join: the token must exist, be
// unexpired and unused, and fit the name; the name must be free. Then the
// host gets its certificate and the list gains it, in one step.
func (t *Trust) Admit(ctx context.Context, call JoinCall, remote string) (JoinReply, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.role != RoleAuthority {
		return JoinReply{}, t.notAuthority("admit hosts")
	}
	h := hashSecret(call.Secret)
	tk, ok := t.tokens[h]
	switch {
	case !ok:
		return JoinReply{}, api.Errorf(api.ErrForbidden, "unknown join token: make a new one with `ringfence host token` on %s", t.name())
	case tk.UsedBy != "":
		return JoinReply{}, api.Errorf(api.ErrForbidden, "this join token was already used by %q at %s: tokens are single-use; make a new one", tk.UsedBy, tk.UsedAt.Format(time.RFC3339))
	case time.Now().After(tk.Expires):
		return JoinReply{}, api.Errorf(api.ErrForbidden, "this join token expired at %s: make a new one with `ringfence host token` on %s", tk.Expires.Format(time.RFC3339), t.name())
	}
	req, err := parseCSR(call.CSR)
	if err != nil {
		return JoinReply{}, api.Errorf(api.ErrInvalid, "%v", err)
	}
	name := req.Subject.CommonName
	if tk.Name != "" && tk.Name != name {
		return JoinReply{}, api.Errorf(api.ErrForbidden, "this token is for host %q, not %q: join with --peer-name %s or make a token for %s", tk.Name, name, tk.Name, name)
	}
	if m, ok := t.list.find(name); ok {
		return JoinReply{}, api.Errorf(api.ErrConflict, "a host named %q is already a peer (joined %s): pick another --peer-name, or revoke it first on %s", name, m.JoinedAt.Format(time.RFC3339), t.name())
	}
	sans := append(append([]string(nil), req.DNSNames...), IPStrings(req.IPAddresses)...)
	if other, n := t.list.claimant(name, sans); other != "" {
		return JoinReply{}, api.Errorf(api.ErrConflict, "host %q already answers to %s: a host's names and addresses are its own (give this one its own with --name)", other, n)
	}
	addr, err := joinAddr(call.Addr, remote)
	if err != nil {
		return JoinReply{}, err
	}
	der, err := issue(t.ca, t.caKey, req)
	if err != nil {
		return JoinReply{}, err
	}
	cert, _ := x509.ParseCertificate(der)
	next := t.list.with(Member{Name: name, Serial: SerialHex(cert.SerialNumber), NotAfter: cert.NotAfter, Addr: addr, JoinedAt: time.Now().UTC(), Names: certNames(cert)})
	tk.UsedBy, tk.UsedAt = name, time.Now().UTC()
	if err := t.saveTokens(); err != nil {
		tk.UsedBy, tk.UsedAt = "", time.Time{}
		return JoinReply{}, err
	}
	if err := t.publish(next); err != nil {
		return JoinReply{}, err
	}
	t.log.Info("a host joined", "name", name, "addr", addr, "serial", SerialHex(cert.SerialNumber))
	return JoinReply{Cert: pemCert(der), CA: pemCert(t.ca.Raw), List: t.signed, Authority: t.name()}, nil
}

// joinAddr is where the authority reaches a joiner: its listener, with
// the address it called from when it listens on every address.
func joinAddr(addr, remote string) (string, error) {
	if addr == "" {
		return "", nil
	}
	h, p, err := net.SplitHostPort(addr)
	if err != nil || portOf(addr) == 0 {
		return "", api.Errorf(api.ErrInvalid, "peer address %q: want HOST:PORT", addr)
	}
	if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
		rh, _, err := net.SplitHostPort(remote)
		if err != nil {
			return "", api.Errorf(api.ErrInvalid, "peer address %q has no host", addr)
		}
		h = rh
	}
	return net.JoinHostPort(h, p), nil
}

// with returns a copy of l with m added or replacing the member of its
// name.
func (l *List) with(m Member) *List {
	n := &List{Version: l.Version, Authority: l.Authority}
	for _, x := range l.Members {
		if x.Name != m.Name {
			n.Members = append(n.Members, x)
		}
	}
	n.Members = append(n.Members, m)
	return n
}

func (l *List) without(name string) *List {
	n := &List{Version: l.Version, Authority: l.Authority}
	for _, x := range l.Members {
		if x.Name != name {
			n.Members = append(n.Members, x)
		}
	}
	return n
}

// publish signs next as the new list (version +1), saves it, takes it in
// and sends it to every other member. Caller holds mu.
func (t *Trust) publish(next *List) error {
	next.Version = t.list.Version + 1
	next.Issued = time.Now().UTC()
	next.Authority = t.name()
	s, err := sign(next, t.caKey)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(s)
	if err := safefile.WriteFile(t.f.List(), b, 0o600); err != nil {
		return err
	}
	t.list, t.signed = next, s
	for _, m := range next.Members {
		if m.Name != t.name() && m.Addr != "" {
			go t.push(m, s)
		}
	}
	return nil
}

// push sends a list to one member; a member that misses it pulls it
// within a minute.
func (t *Trust) push(m Member, s Signed) {
	cfg, err := t.memberConfig(m.Name)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = postJSON(ctx, cfg, "PUT", m.Addr, "/peer/list", s, nil)
		cancel()
	}
	if err != nil {
		t.log.Warn("could not send the peer list to a member (it will pull it)", "host", m.Name, "addr", m.Addr, "err", err)
	}
}

// RenewCall asks the authority for a new certificate (over mutual TLS
// with the current one).
type RenewCall struct {
	CSR []byte `json:"csr"`
}

// RenewReply is the new certificate and the list that has it.
type RenewReply struct {
	Cert []byte `json:"cert"`
	List Signed `json:"list"`
}

// RenewFor is the authority's side of a member's renewal: the caller's
// current certificate names it; the request must be for the same name.
func (t *Trust) RenewFor(caller *x509.Certificate, call RenewCall) (RenewReply, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.role != RoleAuthority {
		return RenewReply{}, t.notAuthority("renew certificates")
	}
	req, err := parseCSR(call.CSR)
	if err != nil {
		return RenewReply{}, api.Errorf(api.ErrInvalid, "%v", err)
	}
	name := caller.Subject.CommonName
	if req.Subject.CommonName != name {
		return RenewReply{}, api.Errorf(api.ErrForbidden, "host %q asked for a certificate for %q: a host renews only its own", name, req.Subject.CommonName)
	}
	m, ok := t.list.find(name)
	if !ok || m.Serial != SerialHex(caller.SerialNumber) {
		return RenewReply{}, api.Errorf(api.ErrForbidden, "host %q is not a current peer", name)
	}
	if asked := append(append([]string(nil), req.DNSNames...), IPStrings(req.IPAddresses)...); !sameNames(asked, m.Names) {
		return RenewReply{}, api.Errorf(api.ErrForbidden, "host %q asked to renew for %v but joined as %v: a renewal keeps a host's names", name, asked, m.Names)
	}
	der, err := issue(t.ca, t.caKey, req)
	if err != nil {
		return RenewReply{}, err
	}
	cert, _ := x509.ParseCertificate(der)
	m.Serial, m.NotAfter, m.Names = SerialHex(cert.SerialNumber), cert.NotAfter, certNames(cert)
	if err := t.publish(t.list.with(m)); err != nil {
		return RenewReply{}, err
	}
	t.log.Info("renewed a peer's certificate", "name", name, "serial", m.Serial, "not_after", m.NotAfter)
	return RenewReply{Cert: pemCert(der), List: t.signed}, nil
}

// sameNames compares two name sets.
func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, x := range a {
		seen[strings.ToLower(x)]++
	}
	for _, x := range b {
		if seen[strings.ToLower(x)]--; seen[strings.ToLower(x)] < 0 {
			return false
		}
	}
	return true
}

// Revoke takes a host off the list: its next handshake with any host
// that has the new list fails. The authority cannot revoke itself (it is
// the one host able to admit and renew peers).
func (t *Trust) Revoke(name string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.role != RoleAuthority {
		return t.notAuthority("revoke hosts")
	}
	m, ok := t.list.find(name)
	if !ok {
		return api.Errorf(api.ErrNotFound, "host %q is not on the peer list (`ringfence host peers` lists them)", name)
	}
	if m.Authority {
		return api.Errorf(api.ErrInvalid, "host %q holds the CA key: revoking it would leave no host able to admit, renew or revoke peers", name)
	}
	if err := t.publish(t.list.without(name)); err != nil {
		return err
	}
	t.log.Info("revoked a peer", "name", name, "serial", m.Serial)
	return nil
}

// Signed answers a member's pull: the current signed list.
func (t *Trust) Signed() (Signed, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.list == nil {
		return Signed{}, api.Errorf(api.ErrNotFound, "this host keeps no peer list")
	}
	return t.signed, nil
}
