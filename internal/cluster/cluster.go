// Package cluster is this host's membership of a Ringfence cluster: the
// etcd member it runs (the first three hosts) or the members it reaches,
// its host record bound to its lease, and the verbs init, join, status
// and leave. A host in no cluster has none of it and keeps its bbolt
// store alone.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/etcdmember"
	"github.com/ringfence/ringfence/internal/safefile"
	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/store/etcdstore"
)

// Ports of the embedded members, the same on every host (a joining host
// finds its authority's member at the authority's address and ClientPort).
const (
	DefaultClientPort = 2379
	DefaultPeerPort   = 2380
	// MaxMembers: the first three hosts run an etcd member; later ones
	// are clients of those (more members slow every write and add no
	// tolerance a small site needs).
	MaxMembers = 3
)

// Etcd roles of a host (api.ClusterStatus.Etcd).
const (
	RoleMember   = "member"
	RoleClient   = "client"
	RoleExternal = "external"
)

// Config is what the daemon hands the cluster.
type Config struct {
	Dir        string // STATE/cluster: cluster.json and the member's data
	ID         etcdmember.Identity
	ClientPort int
	PeerPort   int
	// Endpoints of an existing etcd cluster (--etcd-endpoints): no member
	// is run here.
	Endpoints []string
	Log       *slog.Logger
	// Renewed is told each lease renewal that succeeded, with the time
	// it was sent (HA's fence deadline).
	Renewed func(sent time.Time)
}

// Me is this host as the trust knows it.
type Me struct {
	Name     string
	Addr     string // an IP address in its certificate
	PeerAddr string // its peer listener, HOST:PORT ("" = none)
}

// state is cluster.json, written once this host is in a cluster.
type state struct {
	Name      string    `json:"name"`
	Addr      string    `json:"addr"`
	PeerAddr  string    `json:"peer_addr,omitempty"`
	Etcd      string    `json:"etcd"`
	Witness   bool      `json:"witness,omitempty"`
	Endpoints []string  `json:"endpoints"` // where clients reach etcd
	Cluster   string    `json:"cluster"`   // a member's initial cluster
	Joined    time.Time `json:"joined"`
}

// Cluster is this host's membership (zero state: in no cluster).
type Cluster struct {
	cfg  Config
	opMu sync.Mutex // init, join and leave one at a time

	mu     sync.Mutex
	st     *state
	ready  string // "" ready, else why not (starting, an error)
	member *etcdmember.Member
	store  *etcdstore.Etcd
	lease  store.LeaseID // the heartbeat's, once it has one
	stop   context.CancelFunc
	done   chan struct{}
	// revoked: the serials in this member's revocation list (nil: not
	// written since the start).
	revoked  []string
	crl      []string // the serials in the list: revoked and superseded
	followed []string // a client host's view of the revoked serials (followRevocations)
	// restartDue: a serial was added; the heartbeat restarts the member.
	restartDue bool
	// leaderMoved: when this host last handed etcd's leadership away.
	leaderMoved, leaderChecked time.Time
	// supMu: one writer of superseded.json; supPending: it lists a
	// replaced certificate not yet in etcd.
	supMu      sync.Mutex
	supPending atomic.Bool
}

func (c *Cluster) statePath() string { return filepath.Join(c.cfg.Dir, "cluster.json") }
func (c *Cluster) dataDir() string   { return filepath.Join(c.cfg.Dir, "etcd") }

// Open reads cluster.json; a host in a cluster starts (in the background:
// its member may wait for the others) its member, client and host record.
func Open(cfg Config) (*Cluster, error) {
	if cfg.ClientPort == 0 {
		cfg.ClientPort = DefaultClientPort
	}
	if cfg.PeerPort == 0 {
		cfg.PeerPort = DefaultPeerPort
	}
	c := &Cluster{cfg: cfg}
	b, err := os.ReadFile(c.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("reading %s: %w (remove it to leave the cluster by hand)", c.statePath(), err)
	}
	c.st = &st
	c.ready = "starting"
	if _, err := os.Stat(c.supersededPath()); err == nil {
		c.supPending.Store(true) // a renewal not yet recorded in etcd
	}
	c.startRunning(func(ctx context.Context) error { return c.resume(ctx) })
	return c, nil
}

// resume starts this host's part after a daemon start.
func (c *Cluster) resume(ctx context.Context) error {
	st := c.snapshot()
	if st.Etcd == RoleMember {
		m, err := c.startMember(ctx, st, true)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.member = m
		c.mu.Unlock()
	}
	return c.connect(ctx, st.Endpoints)
}

func (c *Cluster) snapshot() state {
	if c == nil {
		return state{} // a daemon without one (tests)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st == nil {
		return state{}
	}
	return *c.st
}

// In says whether this host is in a cluster.
func (c *Cluster) In() bool {
	if c == nil {
		return false // a daemon without one (tests)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st != nil
}

func (c *Cluster) url(addr string, port int) string {
	return "https://" + net.JoinHostPort(addr, strconv.Itoa(port))
}

func (c *Cluster) memberConfig(st state, joined bool) etcdmember.Config {
	return etcdmember.Config{Name: st.Name, Dir: c.dataDir(), PeerURL: c.url(st.Addr, c.cfg.PeerPort),
		ClientURL: c.url(st.Addr, c.cfg.ClientPort), Cluster: st.Cluster, Join: joined, ID: c.cfg.ID, CRLFile: c.crlPath()}
}

// connect dials etcd and keeps this host's record alive.
func (c *Cluster) connect(ctx context.Context, endpoints []string) error {
	cli, err := etcdmember.Dial(append([]string(nil), endpoints...), c.cfg.ID)
	if err != nil {
		return err
	}
	s := etcdstore.New(cli, etcdstore.Prefix)
	c.mu.Lock()
	c.store = s
	c.mu.Unlock()
	return c.heartbeat(ctx, s)
}

// startRunning runs start, then keeps the host record alive until Close
// or Leave; a failure is kept as the state's reason and retried.
func (c *Cluster) startRunning(start func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	c.mu.Lock()
	c.stop, c.done = cancel, done
	c.mu.Unlock()
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			err := start(ctx)
			if ctx.Err() != nil {
				return
			}
			c.setReady(fmt.Sprintf("not connected: %v", err))
			c.cfg.Log.Warn("cluster: this host's part stopped; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			start = func(ctx context.Context) error { return c.connect(ctx, c.snapshot().Endpoints) }
		}
	}()
}

// setReady sets the state's reason; it reports whether this host was
// ready before (the first failure after a success).
func (c *Cluster) setReady(why string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	was := c.ready == ""
	c.ready = why
	return was
}

// stopRunning stops the heartbeat (and a start in progress).
func (c *Cluster) stopRunning() {
	c.mu.Lock()
	stop, done := c.stop, c.done
	c.stop = nil
	c.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// Close stops this host's part (the daemon is stopping): its member
// leaves the quorum until the daemon comes back; its record's lease runs out.
func (c *Cluster) Close() {
	c.stopRunning()
	c.mu.Lock()
	m, s := c.member, c.store
	c.member, c.store = nil, nil
	c.mu.Unlock()
	if s != nil {
		s.Close()
	}
	if m != nil {
		m.Close()
	}
}

// save writes cluster.json (atomically: this host is in the cluster once
// it is there).
func (c *Cluster) save(st state) error {
	if err := os.MkdirAll(c.cfg.Dir, 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := safefile.WriteFile(c.statePath(), b, 0o600); err != nil {
		return err
	}
	c.mu.Lock()
	c.st = &st
	c.mu.Unlock()
	return nil
}

// etcdCtx bounds one call to etcd made for an admin's verb.
func etcdCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 10*time.Second)
}

// memberList is the etcd members as seen through cli.
func memberList(ctx context.Context, cli *clientv3.Client) (*clientv3.MemberListResponse, error) {
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	resp, err := cli.MemberList(cctx)
	if err != nil {
		return nil, api.Errorf(api.ErrUnavailable, "listing the etcd members: %v (is a quorum of them up?)", err)
	}
	return resp, nil
}
