package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
)

// A verb on a domain another host of the cluster owns is forwarded to
// that host over the peer channel (mutual TLS, the peer list): the
// owner runs it for the caller's role, through its own route table and
// guard, and the reply comes back as it was.

// forwardable: the roles whose calls are forwarded (a tenant's are not:
// tenants are a host's, not yet the cluster's), and the verbs that are:
// a domain's and a definition's (streams are relayed: cluster_relay.go).
var forwardRoles = map[auth.Role]bool{auth.Admin: true, auth.Operator: true, auth.Auditor: true}

func forwardable(path string) bool {
	return strings.HasPrefix(path, "/domains/") || strings.HasPrefix(path, "/definitions/")
}

type forwardedKey struct{}

// forwardIfRemote forwards the request when the domain it names is not
// here but on another host of the cluster; it reports whether it did.
func (s *Server) forwardIfRemote(w http.ResponseWriter, r *http.Request, rt route) bool {
	name := r.PathValue("name")
	if name == "" || !s.cluster.In() || r.Context().Value(forwardedKey{}) != nil || !forwardable(rt.path) {
		return false
	}
	if _, err := s.mgr.Get(name); !errors.Is(err, api.ErrNotFound) {
		return false
	}
	owner, err := s.cluster.Owner(r.Context(), name)
	if err != nil || owner == "" || owner == s.trust.Status().Name {
		return false
	}
	p := principalOf(r.Context())
	if !forwardRoles[p.Role] {
		reply(w, nil, api.Errorf(api.ErrNotFound, "domain %q is on host %q: a %s's calls are not forwarded; call that host", name, owner, p.Role))
		return true
	}
	if relayed(rt.path) {
		s.relayTo(w, r, owner, p)
		return true
	}
	out, err := s.forward(r, owner, p)
	if err != nil {
		reply(w, nil, err)
		return true
	}
	s.relay(w, r, out)
	return true
}

// forward sends the request to owner's peer listener.
func (s *Server) forward(r *http.Request, owner string, p auth.Principal) (api.ForwardReply, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return api.ForwardReply{}, api.Errorf(api.ErrInvalid, "reading the request body: %v", err)
	}
	return s.forwardTo(r.Context(), owner, api.ForwardCall{Method: r.Method, Path: strings.TrimPrefix(r.URL.RequestURI(), api.Version), Body: body, Role: string(p.Role), Caller: p.String()})
}

// forwardTo sends one call to a host's peer listener.
func (s *Server) forwardTo(ctx context.Context, owner string, call api.ForwardCall) (api.ForwardReply, error) {
	addr, err := s.cluster.PeerAddr(ctx, owner)
	if err != nil {
		return api.ForwardReply{}, err
	}
	return s.forwardAt(ctx, owner, addr, call)
}

// forwardAt sends one call to owner's peer listener at addr.
func (s *Server) forwardAt(ctx context.Context, owner, addr string, call api.ForwardCall) (api.ForwardReply, error) {
	var out api.ForwardReply
	host, _, _ := net.SplitHostPort(addr)
	cfg, err := s.trust.ClientConfig(host)
	if err != nil {
		return out, err
	}
	b, _ := json.Marshal(call)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "https://"+addr+api.Version+"/peer/forward", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	defer cl.CloseIdleConnections()
	resp, err := cl.Do(req)
	if err != nil {
		return out, api.Errorf(api.ErrUnavailable, "forwarding to host %q (%s): %v; nothing done", owner, addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return out, api.Errorf(api.ErrUnavailable, "host %q refused the forwarded call: %s", owner, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return out, fmt.Errorf("the forwarded call's reply from %q: %w", owner, err)
	}
	return out, nil
}

// sendReply writes a forwarded call's reply as the owner gave it.
func sendReply(w http.ResponseWriter, out api.ForwardReply) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(out.Status)
	w.Write(out.Body)
}

// forwarded runs a call a peer forwarded, as the caller's role on the
// first host, through this host's own table and guard (never forwarded on).
func (s *Server) forwarded(w http.ResponseWriter, r *http.Request) {
	var call api.ForwardCall
	if err := decode(r, &call); err != nil {
		reply(w, nil, err)
		return
	}
	placed := call.Method == "POST" && (call.Path == "/domains" || strings.HasPrefix(call.Path, "/domains?") ||
		strings.HasPrefix(call.Path, "/cluster/hosts/") && (strings.HasSuffix(call.Path, "/evacuate") || strings.HasSuffix(call.Path, "/member")))
	if !forwardRoles[auth.Role(call.Role)] || !placed && !strings.HasPrefix(call.Path, "/domains/") && !strings.HasPrefix(call.Path, "/definitions/") {
		reply(w, nil, api.Errorf(api.ErrForbidden, "%s %s for a %s is not forwarded", call.Method, call.Path, call.Role))
		return
	}
	peerName := principalOf(r.Context()).Name
	p := auth.Principal{Kind: auth.Peer, Name: peerName + " for " + call.Caller, Role: auth.Role(call.Role), Remote: principalOf(r.Context()).Remote}
	ctx := context.WithValue(withPrincipal(r.Context(), p), forwardedKey{}, true)
	req, err := http.NewRequestWithContext(ctx, call.Method, api.Version+call.Path, bytes.NewReader(call.Body))
	if err != nil {
		reply(w, nil, api.Errorf(api.ErrInvalid, "forwarded call: %v", err))
		return
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	s.forwardMux.ServeHTTP(rec, req)
	out := api.ForwardReply{Status: rec.status, Body: rec.body.Bytes()}
	// An operation is waited for here: its ID means nothing on the
	// forwarding host, which mirrors the finished one (relay).
	var op api.Operation
	if rec.status == http.StatusAccepted && json.Unmarshal(out.Body, &op) == nil && op.ID != "" {
		done, err := s.ops.Wait(r.Context(), op.ID)
		if err != nil {
			reply(w, nil, err)
			return
		}
		out.Body, _ = json.Marshal(done)
	}
	if placed {
		// The caller's next verb (create -c: the console) finds it here.
		s.publishNow(r.Context())
	}
	reply(w, out, nil)
}

// relay answers the caller with a forwarded call's reply: as it was, or,
// for an operation (finished on the owner), as an operation of this host
// that has the same end, so the caller waits on it as on any other.
func (s *Server) relay(w http.ResponseWriter, r *http.Request, out api.ForwardReply) {
	var op api.Operation
	if out.Status != http.StatusAccepted || json.Unmarshal(out.Body, &op) != nil || !op.Done() {
		sendReply(w, out)
		return
	}
	s.startOp(w, r, op.Kind, op.Domain, op.Tenant, func(context.Context, func(api.JobProgress)) (any, error) {
		if err := op.Err(); err != nil {
			return nil, err
		}
		return op.Result, nil
	})
}

// recorder keeps a forwarded call's reply.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.status = code }
