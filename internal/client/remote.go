package client

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// NewRemote returns a client of a daemon's remote API listener at rawURL
// (https://HOST:PORT) that trusts exactly the certificate whose SHA-256
// is pin (hex, as FetchFingerprint returns it; no CA is consulted) and
// sends token as its bearer token.
func NewRemote(rawURL, token, pin string) (*Client, error) {
	return newRemote(rawURL, token, pin, nil)
}

// NewRemoteCert is NewRemote with a client certificate bound to a token
// (BindCertificate) in place of the token.
func NewRemoteCert(rawURL, pin string, cert tls.Certificate) (*Client, error) {
	return newRemote(rawURL, "", pin, &cert)
}

func newRemote(rawURL, token, pin string, cert *tls.Certificate) (*Client, error) {
	hostport, err := remoteAddr(rawURL)
	if err != nil {
		return nil, err
	}
	if strings.IndexFunc(token, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return nil, errors.New("the token contains spaces or control characters")
	}
	pin = strings.ToLower(strings.ReplaceAll(pin, ":", ""))
	if len(pin) != 64 {
		return nil, fmt.Errorf("the pinned certificate fingerprint %q is not a SHA-256 in hex", pin)
	}
	cfg := pinnedTLS(pin)
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	dial := func(ctx context.Context) (net.Conn, error) {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: cfg}
		return d.DialContext(ctx, "tcp", hostport)
	}
	tr := &http.Transport{
		DialTLSContext:      func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &Client{Socket: rawURL, http: &http.Client{Transport: tr, CheckRedirect: noRedirect}, base: "https://" + hostport,
		dial: dial, token: token, hint: "is the remote's daemon serving --api-listen there?"}, nil
}

// remoteAddr is the HOST:PORT of an https:// URL with no path.
func remoteAddr(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" {
		return "", fmt.Errorf("%q is not a remote's address: want https://HOST:PORT", rawURL)
	}
	return u.Host, nil
}

// pinnedTLS accepts the one certificate whose SHA-256 is pin.
func pinnedTLS(pin string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"http/1.1"},
		// No CA: the certificate is checked by its fingerprint below.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server showed no certificate")
			}
			if got := Fingerprint(cs.PeerCertificates[0]); got != pin {
				return fmt.Errorf("the server's certificate changed: SHA-256 %s, pinned %s (a new certificate, or someone in between; `ringfence remote remove` and add it again only if you know why)", got, pin)
			}
			return nil
		},
	}
}

// Fingerprint is a certificate's SHA-256 in hex.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// FetchCertificate connects to the remote at rawURL and returns the
// certificate it shows, unverified: the caller shows its fingerprint and
// pins it (trust on first use).
func FetchCertificate(ctx context.Context, rawURL string) (*x509.Certificate, error) {
	hostport, err := remoteAddr(rawURL)
	if err != nil {
		return nil, err
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %w", rawURL, unwrapDial(err))
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s showed no certificate", rawURL)
	}
	return certs[0], nil
}

// CreateToken makes an API token; its secret is in the reply, only there.
func (c *Client) CreateToken(ctx context.Context, req api.APITokenRequest) (api.APITokenCreated, error) {
	var out api.APITokenCreated
	return out, c.do(ctx, "POST", "/tokens", req, &out)
}

// Tokens lists the API tokens (never their secrets).
func (c *Client) Tokens(ctx context.Context) ([]api.APIToken, error) {
	var out []api.APIToken
	return out, c.do(ctx, "GET", "/tokens", nil, &out)
}

// BindCertificate binds a client certificate (PEM) to the token this
// client uses; it returns the certificate's SHA-256.
func (c *Client) BindCertificate(ctx context.Context, certPEM string) (string, error) {
	var out struct {
		Fingerprint string `json:"fingerprint"`
	}
	return out.Fingerprint, c.do(ctx, "POST", "/tokens/certificates", api.APICertRequest{Certificate: certPEM}, &out)
}

// RevokeToken revokes an API token.
func (c *Client) RevokeToken(ctx context.Context, name string) (api.APIToken, error) {
	var out api.APIToken
	return out, c.do(ctx, "DELETE", "/tokens/"+seg(name), nil, &out)
}

// Upload is a raw request body (a file uploaded) of Size bytes (-1:
// unknown, sent chunked; known, a daemon refuses one over its cap at once).
type Upload struct {
	R    io.Reader
	Size int64
}

// ExportTo exports a domain and writes the archive to w as the daemon
// makes it (the caller's file, never one on the daemon's host); it
// returns the archive's size. A transfer cut short is an error.
func (c *Client) ExportTo(ctx context.Context, name string, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, "GET", "/domains/"+seg(name)+"/export/archive", nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("the archive's transfer broke off after %d bytes: %w", n, err)
	}
	return n, nil
}

// ImportFrom uploads an archive (req.Path unused) and imports it.
func (c *Client) ImportFrom(ctx context.Context, archive Upload, req api.ImportRequest, progress func(api.JobProgress)) (api.Domain, error) {
	q := url.Values{}
	for k, v := range map[string]string{"dir": req.Dir, "name": req.Name, "tenant": req.Tenant} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for k, v := range map[string]bool{"no_start": req.NoStart, "paused": req.Paused} {
		if v {
			q.Set(k, "1")
		}
	}
	path := "/import/archive"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out api.Domain
	err := c.doProgress(ctx, "POST", path, archive, progress, &out)
	return out, err
}

// SaveImage streams a domain's save image into w (the caller's file) and
// returns the token that confirms it (ConfirmSave). Without checkpoint
// the domain waits, paused, for that confirmation; with it, it runs on.
func (c *Client) SaveImage(ctx context.Context, name string, checkpoint bool, w io.Writer) (token string, n int64, err error) {
	path := "/domains/" + seg(name) + "/save/image"
	if checkpoint {
		path += "?checkpoint=1"
	}
	resp, err := c.send(ctx, "POST", path, nil)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	n, err = io.Copy(w, resp.Body)
	if err != nil {
		return "", n, fmt.Errorf("the save image's transfer broke off after %d bytes: %w", n, err)
	}
	return resp.Header.Get("X-Ringfence-Save-Token"), n, nil
}

// ConfirmSave tells the daemon the caller holds a checked copy of the
// image SaveImage streamed: the domain is ended.
func (c *Client) ConfirmSave(ctx context.Context, name, token string) error {
	return c.do(ctx, "POST", "/domains/"+seg(name)+"/save/confirm", api.SaveConfirm{Token: token}, nil)
}

// RestoreFrom uploads a save image and restores the domain it holds.
func (c *Client) RestoreFrom(ctx context.Context, image Upload, paused bool) (api.Domain, error) {
	path := "/restore/image"
	if paused {
		path += "?paused=1"
	}
	var out api.Domain
	return out, c.do(ctx, "POST", path, image, &out)
}
