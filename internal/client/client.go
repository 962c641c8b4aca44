// Package client is the typed Go client of the daemon's API. The CLI uses
// it; so can scripts and, later, peers.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
)

// Client talks to one daemon: over its unix socket (New), or over its
// remote API listener with a token (NewRemote, remote.go). Every method
// works over either.
type Client struct {
	Socket string // the socket path, or the remote's URL
	http   *http.Client
	// base is the URL every path is put under; dial opens a raw
	// connection for the console's upgrade; token, when set, is sent as
	// Authorization: Bearer.
	base  string
	dial  func(ctx context.Context) (net.Conn, error)
	token string
	hint  string // what to check when the daemon cannot be reached
}

// New returns a client for the socket path.
func New(socket string) *Client {
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }}
	return &Client{Socket: socket, http: &http.Client{Transport: tr, CheckRedirect: noRedirect}, base: "http://ringfence", dial: dial,
		hint: "is `ringfence serve` running? are you root?"}
}

// noRedirect: a POST must reach the route it names or fail, never follow
// a redirect.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// seg escapes one path segment. Every name a caller gives goes through it,
// so "g1/destroy?" or "../domains/g1" stay one segment (which the daemon
// then refuses by its name rule) instead of becoming another route.
func seg(s string) string { return url.PathEscape(s) }

// checkPath refuses a request path that is not canonical: a segment "."
// or ".." would make the server's router redirect to another route, an
// empty one (a name given as an empty string) routes nowhere.
func checkPath(path string) error {
	path, _, _ = strings.Cut(path, "?")
	for i, p := range strings.Split(path, "/") {
		if p == "." || p == ".." {
			return api.Errorf(api.ErrInvalid, "%q is not a valid name: '.' and '..' name no object", p)
		}
		if p == "" && i > 0 {
			return api.Errorf(api.ErrInvalid, "a name is empty (''): give the name of the domain (or other object) to act on")
		}
	}
	return nil
}

// send makes one request and returns the response when its status is a
// success; an error status becomes the daemon's error (with its class).
func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	var body io.Reader
	length := int64(-1)
	if u, ok := in.(Upload); ok {
		body, length = u.R, u.Size // a raw body (an upload)
	} else if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+api.Version+path, body)
	if err != nil {
		return nil, err
	}
	if length >= 0 {
		req.ContentLength = length
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the ringfence daemon at %s: %w (%s)", c.Socket, unwrapDial(err), c.hint)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e api.ErrorBody
		json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return nil, &api.RemoteError{Message: e.Error, Class: e.Class}
	}
	return resp, nil
}

// do makes one request and decodes its reply into out. A route that
// starts an operation (202 Accepted) is waited for (see follow), so its
// caller gets the final result as from a synchronous route.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.doProgress(ctx, method, path, in, nil, out)
}

// doProgress is do, calling progress with an operation's progress.
func (c *Client) doProgress(ctx context.Context, method, path string, in any, progress func(api.JobProgress), out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusAccepted {
		var op api.Operation
		if err := json.NewDecoder(resp.Body).Decode(&op); err != nil {
			return fmt.Errorf("reading the operation the daemon started: %w", err)
		}
		return c.follow(ctx, op, progress, out)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

func unwrapDial(err error) error {
	var op *net.OpError
	for e := err; e != nil; {
		if o, ok := e.(*net.OpError); ok {
			op = o
			break
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	if op != nil {
		return op.Err
	}
	return err
}

// Host returns host facts.
func (c *Client) Host(ctx context.Context) (api.HostInfo, error) {
	var h api.HostInfo
	return h, c.do(ctx, "GET", "/host", nil, &h)
}

// List returns the domains that run or are kept.
func (c *Client) List(ctx context.Context) ([]api.Domain, error) {
	var ds []api.Domain
	return ds, c.do(ctx, "GET", "/domains", nil, &ds)
}

// ListAll returns every domain, the defined stopped ones too.
func (c *Client) ListAll(ctx context.Context) ([]api.Domain, error) {
	var ds []api.Domain
	return ds, c.do(ctx, "GET", "/domains?all=1", nil, &ds)
}

// Define stores a domain without starting it.
func (c *Client) Define(ctx context.Context, spec api.DomainSpec) (api.Domain, error) {
	var d api.Domain
	return d, c.do(ctx, "POST", "/definitions", api.DefineRequest{Spec: spec}, &d)
}

// Definition returns a defined domain's definition.
func (c *Client) Definition(ctx context.Context, name string) (api.Definition, error) {
	var d api.Definition
	return d, c.do(ctx, "GET", "/definitions/"+seg(name), nil, &d)
}

// UpdateDefinition replaces a definition (applied at the next start when
// the domain runs).
func (c *Client) UpdateDefinition(ctx context.Context, name string, spec api.DomainSpec) (api.Definition, error) {
	var d api.Definition
	return d, c.do(ctx, "PUT", "/definitions/"+seg(name), api.DefineRequest{Spec: spec}, &d)
}

// Undefine removes a definition.
func (c *Client) Undefine(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/definitions/"+seg(name), nil, nil)
}

// SetAutostart sets a defined domain's start at host boot.
func (c *Client) SetAutostart(ctx context.Context, name string, a api.Autostart) (api.Definition, error) {
	var d api.Definition
	return d, c.do(ctx, "PUT", "/definitions/"+seg(name)+"/autostart", a, &d)
}

// Log returns a domain's console or QEMU log (its last tail bytes).
func (c *Client) Log(ctx context.Context, name, which string, tail int) ([]byte, error) {
	if err := checkPath("/logs/" + name); err != nil {
		return nil, err
	}
	resp, err := c.send(ctx, "GET", fmt.Sprintf("/logs/%s?file=%s&tail=%d", seg(name), url.QueryEscape(which), tail), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// HostShutdown ends every running domain (host shutdown).
func (c *Client) HostShutdown(ctx context.Context, req api.HostShutdownRequest) (api.HostShutdownResult, error) {
	var out api.HostShutdownResult
	return out, c.do(ctx, "POST", "/host/shutdown", req, &out)
}

// HostLog returns the daemon's recent log.
func (c *Client) HostLog(ctx context.Context) ([]byte, error) { return c.text(ctx, "/host/log") }

// Get returns one domain.
func (c *Client) Get(ctx context.Context, name string) (api.Domain, error) {
	var d api.Domain
	return d, c.do(ctx, "GET", "/domains/"+seg(name), nil, &d)
}

// Create starts a domain.
func (c *Client) Create(ctx context.Context, req api.CreateRequest) (api.Domain, error) {
	var d api.Domain
	return d, c.do(ctx, "POST", "/domains", req, &d)
}

// DryRun validates a spec and returns the argv it would run.
func (c *Client) DryRun(ctx context.Context, spec api.DomainSpec, tenant string) (api.DryRun, error) {
	var d api.DryRun
	return d, c.do(ctx, "POST", "/domains", api.CreateRequest{Spec: spec, DryRun: true, Tenant: tenant}, &d)
}

// Action runs shutdown, reboot, destroy, pause or unpause.
func (c *Client) Action(ctx context.Context, name, action string, body any) error {
	return c.do(ctx, "POST", "/domains/"+seg(name)+"/"+seg(action), body, nil)
}

// Restore starts a domain from a save file on the daemon's host.
func (c *Client) Restore(ctx context.Context, req api.RestoreRequest) (api.Domain, error) {
	var d api.Domain
	return d, c.do(ctx, "POST", "/restore", req, &d)
}

// Migrate moves a domain to another host, calling progress with the
// operation's migration figures, and returns the result.
func (c *Client) Migrate(ctx context.Context, name string, req api.MigrateRequest, progress func(api.MigrationProgress)) (api.MigrationResult, error) {
	var out api.MigrationResult
	var jp func(api.JobProgress)
	if progress != nil {
		jp = func(p api.JobProgress) {
			if p.Migration != nil {
				progress(*p.Migration)
			}
		}
	}
	return out, c.doProgress(ctx, "POST", "/domains/"+seg(name)+"/migrate", req, jp, &out)
}

// Stats returns the latest per-domain figures (for top).
func (c *Client) Stats(ctx context.Context) (api.Stats, error) {
	var s api.Stats
	return s, c.do(ctx, "GET", "/stats", nil, &s)
}

// Console opens a raw console stream: reads are guest output (history
// first unless history is false), writes go to the guest.
func (c *Client) Console(ctx context.Context, name string, history bool) (net.Conn, error) {
	q := ""
	if !history {
		q = "?history=0"
	}
	return c.upgrade(ctx, name, "console"+q, "ringfence-console")
}

// VNC opens a raw stream to a domain's VNC display: RFB both ways (each
// call a new viewer's connection).
func (c *Client) VNC(ctx context.Context, name string) (net.Conn, error) {
	return c.upgrade(ctx, name, "vnc", "ringfence-vnc")
}

// upgrade opens GET /domains/NAME/VERB as the raw upgrade to proto.
func (c *Client) upgrade(ctx context.Context, name, verb, proto string) (net.Conn, error) {
	if err := checkPath("/domains/" + name); err != nil {
		return nil, err
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the ringfence daemon at %s: %w", c.Socket, unwrapDial(err))
	}
	authz := ""
	if c.token != "" {
		authz = "Authorization: Bearer " + c.token + "\r\n" // checked by NewRemote: no CR LF
	}
	// The request line is written by hand (an upgrade), so the name is
	// escaped like every other path segment: no CR LF can reach it.
	fmt.Fprintf(conn, "GET %s/domains/%s/%s HTTP/1.1\r\nHost: ringfence\r\n%sConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", api.Version, seg(name), verb, authz, proto)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("opening %s: %w", proto, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		var e api.ErrorBody
		json.NewDecoder(resp.Body).Decode(&e)
		conn.Close()
		if e.Error == "" {
			e.Error = resp.Status
		}
		return nil, &api.RemoteError{Message: strings.TrimSpace(e.Error), Class: e.Class}
	}
	return &bufConn{Conn: conn, r: br}, nil
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// Pools lists the storage pools.
func (c *Client) Pools(ctx context.Context) ([]api.Pool, error) {
	var out []api.Pool
	err := c.do(ctx, "GET", "/pools", nil, &out)
	return out, err
}

// CreatePool registers a directory pool.
func (c *Client) CreatePool(ctx context.Context, p api.Pool) (api.Pool, error) {
	var out api.Pool
	err := c.do(ctx, "POST", "/pools", p, &out)
	return out, err
}

// DeletePool forgets an empty pool.
func (c *Client) DeletePool(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/pools/"+seg(name), nil, nil)
}

// Volumes lists a pool's volumes.
func (c *Client) Volumes(ctx context.Context, pool string) ([]api.Volume, error) {
	var out []api.Volume
	err := c.do(ctx, "GET", "/pools/"+seg(pool)+"/volumes", nil, &out)
	return out, err
}

// CreateVolume makes a volume (a thin clone with From).
func (c *Client) CreateVolume(ctx context.Context, pool string, req api.VolumeRequest) (api.Volume, error) {
	var out api.Volume
	err := c.do(ctx, "POST", "/pools/"+seg(pool)+"/volumes", req, &out)
	return out, err
}

// ResizeVolume grows a volume.
func (c *Client) ResizeVolume(ctx context.Context, pool, name string, size int64) (api.Volume, error) {
	var out api.Volume
	err := c.do(ctx, "PUT", "/pools/"+seg(pool)+"/volumes/"+seg(name), api.VolumeRequest{SizeB: size}, &out)
	return out, err
}

// DeleteVolume removes a volume no domain uses.
func (c *Client) DeleteVolume(ctx context.Context, pool, name string) error {
	return c.do(ctx, "DELETE", "/pools/"+seg(pool)+"/volumes/"+seg(name), nil, nil)
}

// Snapshots lists a domain's snapshots.
func (c *Client) Snapshots(ctx context.Context, name string) ([]api.Snapshot, error) {
	var out []api.Snapshot
	err := c.do(ctx, "GET", "/domains/"+seg(name)+"/snapshots", nil, &out)
	return out, err
}

// CreateSnapshot takes a snapshot (with the memory when req.Memory).
func (c *Client) CreateSnapshot(ctx context.Context, name string, req api.SnapshotRequest) (api.Snapshot, error) {
	var out api.Snapshot
	err := c.do(ctx, "POST", "/domains/"+seg(name)+"/snapshots", req, &out)
	return out, err
}

// RevertSnapshot returns a domain to a snapshot.
func (c *Client) RevertSnapshot(ctx context.Context, name, snap string) (api.Domain, error) {
	var out api.Domain
	err := c.do(ctx, "POST", "/domains/"+seg(name)+"/snapshots/"+seg(snap)+"/revert", nil, &out)
	return out, err
}

// DeleteSnapshot removes a snapshot.
func (c *Client) DeleteSnapshot(ctx context.Context, name, snap string) error {
	return c.do(ctx, "DELETE", "/domains/"+seg(name)+"/snapshots/"+seg(snap), nil, nil)
}

// Export writes a domain to an archive on the daemon's host.
func (c *Client) Export(ctx context.Context, name string, req api.ExportRequest, progress func(api.JobProgress)) (api.ExportResult, error) {
	var out api.ExportResult
	err := c.doProgress(ctx, "POST", "/domains/"+seg(name)+"/export", req, progress, &out)
	return out, err
}

// Import creates a domain from an archive on the daemon's host.
func (c *Client) Import(ctx context.Context, req api.ImportRequest, progress func(api.JobProgress)) (api.Domain, error) {
	var out api.Domain
	err := c.doProgress(ctx, "POST", "/import", req, progress, &out)
	return out, err
}

// Blocks lists a domain's disks with what the running VM has.
func (c *Client) Blocks(ctx context.Context, name string) ([]api.BlockDevice, error) {
	var out []api.BlockDevice
	err := c.do(ctx, "GET", "/domains/"+seg(name)+"/blocks", nil, &out)
	return out, err
}

// Networks lists the managed networks.
func (c *Client) Networks(ctx context.Context) ([]api.Network, error) {
	var out []api.Network
	err := c.do(ctx, "GET", "/networks", nil, &out)
	return out, err
}

// Network returns one managed network.
func (c *Client) Network(ctx context.Context, name string) (api.Network, error) {
	var out api.Network
	err := c.do(ctx, "GET", "/networks/"+seg(name), nil, &out)
	return out, err
}

// CreateNetwork makes a managed network.
func (c *Client) CreateNetwork(ctx context.Context, n api.Network) (api.Network, error) {
	var out api.Network
	err := c.do(ctx, "POST", "/networks", n, &out)
	return out, err
}

// DeleteNetwork removes a managed network no domain uses.
func (c *Client) DeleteNetwork(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/networks/"+seg(name), nil, nil)
}

// Leases lists a NAT network's DHCP leases.
func (c *Client) Leases(ctx context.Context, name string) ([]api.Lease, error) {
	var out []api.Lease
	err := c.do(ctx, "GET", "/networks/"+seg(name)+"/leases", nil, &out)
	return out, err
}

// Vifs lists a domain's vifs with their taps.
func (c *Client) Vifs(ctx context.Context, name string) ([]api.NetworkDevice, error) {
	var out []api.NetworkDevice
	err := c.do(ctx, "GET", "/domains/"+seg(name)+"/vifs", nil, &out)
	return out, err
}

// Trust makes this host trusted (the authority, or offline).
func (c *Client) Trust(ctx context.Context, req api.TrustRequest) (*api.PeerStatus, error) {
	var out api.PeerStatus
	return &out, c.do(ctx, "POST", "/host/trust", req, &out)
}

// Token makes a single-use join token (on the authority).
func (c *Client) Token(ctx context.Context, req api.TokenRequest) (api.PeerToken, error) {
	var out api.PeerToken
	return out, c.do(ctx, "POST", "/host/tokens", req, &out)
}

// Join joins this host with a token.
func (c *Client) Join(ctx context.Context, req api.JoinRequest) (*api.PeerStatus, error) {
	var out api.PeerStatus
	return &out, c.do(ctx, "POST", "/host/join", req, &out)
}

// Renew gives this host a new certificate.
func (c *Client) Renew(ctx context.Context) (*api.PeerStatus, error) {
	var out api.PeerStatus
	return &out, c.do(ctx, "POST", "/host/renew", nil, &out)
}

// Peers lists the trusted hosts.
func (c *Client) Peers(ctx context.Context) (api.PeerList, error) {
	var out api.PeerList
	return out, c.do(ctx, "GET", "/host/peers", nil, &out)
}

// Revoke takes a host off the peer list (on the authority).
func (c *Client) Revoke(ctx context.Context, name string) (api.PeerList, error) {
	var out api.PeerList
	return out, c.do(ctx, "POST", "/host/peers/"+seg(name)+"/revoke", nil, &out)
}

// GuestInfo is what a running domain's guest agent says.
func (c *Client) GuestInfo(ctx context.Context, name string) (api.GuestInfo, error) {
	var gi api.GuestInfo
	return gi, c.do(ctx, "GET", "/domains/"+seg(name)+"/guest", nil, &gi)
}

// GuestExec runs a command in a running domain's guest.
func (c *Client) GuestExec(ctx context.Context, name string, req api.GuestExecRequest) (api.GuestExecResult, error) {
	var r api.GuestExecResult
	return r, c.do(ctx, "POST", "/domains/"+seg(name)+"/exec", req, &r)
}

// SetGuestPassword sets a user's password in a running domain's guest.
func (c *Client) SetGuestPassword(ctx context.Context, name string, req api.GuestPasswordRequest) error {
	return c.do(ctx, "POST", "/domains/"+seg(name)+"/password", req, nil)
}
