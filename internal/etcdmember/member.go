// Package etcdmember runs an etcd member inside the daemon (the etcd
// project's embed package) and dials etcd clusters. Both sides speak TLS
// 1.3 with the host's peer identity (STATE/tls: host.pem is certificate and
// key, ca.pem the cluster's CA), so etcd admits exactly the hosts the
// peer trust admits.
package etcdmember

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// MaxTxnOps is what the members Ringfence runs allow in one transaction
// (the store's optimistic transactions compare every key they read).
const MaxTxnOps = 4096

// Identity is where this host's TLS identity is.
type Identity struct {
	CertKey string // certificate and key in one PEM file
	CA      string
}

// Config is one embedded member.
type Config struct {
	Name      string // the host's name (the peer name)
	Dir       string // its data dir
	PeerURL   string // https://IP:PORT, listened on and advertised
	ClientURL string // https://IP:PORT
	// Cluster is the initial cluster "name=peerURL,..." (this member
	// included); Join says the cluster exists already (a member added).
	Cluster string
	Join    bool
	ID      Identity
	// CRLFile lists the revoked certificates' serials (DER); etcd reads
	// it at every connection, so a host revoked after the start is
	// refused at its next one. It must exist ("" = none).
	CRLFile string
}

// Member is a running embedded etcd member.
type Member struct {
	e         *embed.Etcd
	cfg       Config
	closeOnce sync.Once
}

// StartTimeout bounds how long a member may take to join its cluster.
const StartTimeout = 60 * time.Second

// Start starts a member and waits until it serves (its cluster has a
// quorum with it).
func Start(ctx context.Context, c Config) (*Member, error) {
	ec, err := c.embedConfig()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, err
	}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("starting the etcd member %s: %w", c.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		m := &Member{e: e, cfg: c}
		go m.closeWhenStopped()
		return m, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("the etcd member %s failed: %w", c.Name, err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("the etcd member %s did not reach its cluster: %w", c.Name, ctx.Err())
	}
}

func (c Config) embedConfig() (*embed.Config, error) {
	peer, err := url.Parse(c.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcd peer URL %q: %w", c.PeerURL, err)
	}
	client, err := url.Parse(c.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcd client URL %q: %w", c.ClientURL, err)
	}
	ec := embed.NewConfig()
	ec.Name, ec.Dir = c.Name, c.Dir
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	ec.InitialCluster = c.Cluster
	ec.InitialClusterToken = "ringfence"
	if c.Join {
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	ec.MaxTxnOps = MaxTxnOps
	// A loaded host (QEMUs under TCG beside the daemon) must not make the
	// members elect a leader over and over: etcd's 100 ms heartbeat and
	// 1 s election are for idle dedicated machines.
	ec.TickMs, ec.ElectionMs = 250, 2500
	ec.LogLevel = "error"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	tlsInfo := transport.TLSInfo{CertFile: c.ID.CertKey, KeyFile: c.ID.CertKey, TrustedCAFile: c.ID.CA, ClientCertAuth: true, CRLFile: c.CRLFile}
	ec.PeerTLSInfo, ec.ClientTLSInfo = tlsInfo, tlsInfo
	ec.TlsMinVersion = "TLS1.3"
	return ec, nil
}

// LocalPrefix reads the values under prefix from this member's own copy
// of the data (serializable: no leader, no network), in key order.
// A member whose server has stopped (removed from its cluster) answers
// an error: etcd's own read of a closed backend dereferences nil, so the
// stop is checked first, and a stop racing the read is recovered.
func (m *Member) LocalPrefix(ctx context.Context, prefix string) (out [][]byte, err error) {
	select {
	case <-m.e.Server.StopNotify():
		return nil, fmt.Errorf("reading %s from this host's etcd member: %w", prefix, ErrStopped)
	default:
	}
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("reading %s from this host's etcd member: %w (%v)", prefix, ErrStopped, r)
		}
	}()
	key := []byte(prefix)
	resp, err := m.e.Server.Range(ctx, &pb.RangeRequest{Key: key, RangeEnd: []byte(clientv3.GetPrefixRangeEnd(prefix)), Serializable: true})
	if err != nil {
		return nil, fmt.Errorf("reading %s from this host's etcd member: %w", prefix, err)
	}
	out = make([][]byte, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, kv.Value)
	}
	return out, nil
}

// ErrStopped: this member's server has stopped (it was removed).
var ErrStopped = errors.New("the etcd member has stopped (removed from its cluster)")

// LeaderID is the member ID of its cluster's leader, as this member
// knows it (0: none).
func (m *Member) LeaderID() uint64 { return m.e.Server.Lead() }

// Leads says whether this member leads its cluster.
func (m *Member) Leads() bool { return m.e.Server.Leader() == m.e.Server.MemberID() }

// HandLeadership makes the voting member named to the leader; this
// member must lead. It returns once the transfer is done (or ctx ends).
func (m *Member) HandLeadership(ctx context.Context, to string) error {
	s := m.e.Server
	for _, mb := range s.Cluster().Members() {
		if mb.Name == to && !mb.IsLearner {
			if err := s.MoveLeader(ctx, s.Lead(), uint64(mb.ID)); err != nil {
				return fmt.Errorf("handing etcd's leadership to %s: %w", to, err)
			}
			return nil
		}
	}
	return fmt.Errorf("handing etcd's leadership to %s: no voting member of that name", to)
}

// Close stops the member (the cluster carries on without it).
func (m *Member) Close() {
	m.closeOnce.Do(m.e.Close)
	select {
	case <-m.e.Server.StopNotify():
	case <-time.After(10 * time.Second):
	}
}

// closeWhenStopped: a member removed from its cluster (its host revoked)
// stops its server but keeps its listeners, answering "server stopped"
// to every client that still lists its endpoint; closing them lets those
// clients fail over to the other members at once.
func (m *Member) closeWhenStopped() {
	<-m.e.Server.StopNotify()
	m.closeOnce.Do(m.e.Close)
}

// ClientURL is where this member serves clients.
func (m *Member) ClientURL() string { return m.cfg.ClientURL }

// Dial is a client of the cluster at endpoints with this host's identity.
func Dial(endpoints []string, id Identity) (*clientv3.Client, error) {
	tlsCfg, err := (transport.TLSInfo{CertFile: id.CertKey, KeyFile: id.CertKey, TrustedCAFile: id.CA}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("the etcd client's TLS (%s): %w", id.CertKey, err)
	}
	tlsCfg.MinVersion = tls.VersionTLS13
	return dial(endpoints, tlsCfg)
}

func dial(endpoints []string, tlsCfg *tls.Config) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("no etcd endpoint given")
	}
	for i, ep := range endpoints {
		endpoints[i] = strings.TrimPrefix(strings.TrimPrefix(ep, "https://"), "http://")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints, TLS: tlsCfg, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop(), AutoSyncInterval: 30 * time.Second,
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd at %s: %w", strings.Join(endpoints, ","), err)
	}
	return cli, nil
}
