package etcdmember_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/etcdmember"
	"github.com/ringfence/ringfence/internal/peer"
	"github.com/ringfence/ringfence/internal/store"
	"github.com/ringfence/ringfence/internal/store/etcdstore"
	"github.com/ringfence/ringfence/internal/store/storetest"
)

// identity makes a host identity of its own CA (as `host trust` does).
func identity(t *testing.T, dir string) etcdmember.Identity {
	t.Helper()
	tr, err := peer.Open(peer.Files{Dir: dir}, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Init("h1", []string{"127.0.0.1"}, false, ""); err != nil {
		t.Fatal(err)
	}
	f := peer.Files{Dir: dir}
	return etcdmember.Identity{CertKey: f.Cert(), CA: f.CA()}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// member starts a one-member cluster over TLS with the host identity.
func member(t *testing.T, dir string, id etcdmember.Identity, peerPort, clientPort int) *etcdmember.Member {
	t.Helper()
	peerURL := fmt.Sprintf("https://127.0.0.1:%d", peerPort)
	ctx, cancel := context.WithTimeout(context.Background(), etcdmember.StartTimeout)
	defer cancel()
	m, err := etcdmember.Start(ctx, etcdmember.Config{
		Name: "h1", Dir: dir, PeerURL: peerURL, ClientURL: fmt.Sprintf("https://127.0.0.1:%d", clientPort),
		Cluster: "h1=" + peerURL, ID: id,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestEtcdStore runs the store suite on an embedded etcd member, reached
// over TLS with a host identity; durability restarts the member.
func TestEtcdStore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd member")
	}
	dir := t.TempDir()
	id := identity(t, filepath.Join(dir, "tls"))
	pp, cp := freePort(t), freePort(t)
	m := member(t, filepath.Join(dir, "etcd"), id, pp, cp)
	defer func() { m.Close() }()
	seq := 0
	open := func(t *testing.T) store.Store {
		cli, err := etcdmember.Dial([]string{m.ClientURL()}, id)
		if err != nil {
			t.Fatal(err)
		}
		return etcdstore.New(cli, fmt.Sprintf("/test/%d/", seq))
	}
	storetest.Run(t, func(t *testing.T) (store.Store, func(*testing.T) store.Store) {
		seq++
		return open(t), func(t *testing.T) store.Store {
			m.Close()
			m = member(t, filepath.Join(dir, "etcd"), id, pp, cp)
			return open(t)
		}
	})
}

// TestEtcdRefusesStrangers: a client without a certificate of the
// cluster's CA gets nothing from the member.
func TestEtcdRefusesStrangers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd member")
	}
	dir := t.TempDir()
	id := identity(t, filepath.Join(dir, "tls"))
	m := member(t, filepath.Join(dir, "etcd"), id, freePort(t), freePort(t))
	defer m.Close()
	other := identity(t, filepath.Join(dir, "other"))
	cli, err := etcdmember.Dial([]string{m.ClientURL()}, etcdmember.Identity{CertKey: other.CertKey, CA: id.CA})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := cli.Get(ctx, "x"); err == nil {
		t.Fatal("a host of another CA read from the member")
	}
}

// TestLocalPrefixStopped: the member's own copy is read in process; once
// its server has stopped (a removed member; here closed) the read is an
// error, not etcd's nil dereference of the closed backend (it took a
// revoked host's daemon down).
func TestLocalPrefixStopped(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd member")
	}
	dir := t.TempDir()
	id := identity(t, filepath.Join(dir, "tls"))
	m := member(t, filepath.Join(dir, "etcd"), id, freePort(t), freePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := m.LocalPrefix(ctx, "/x/"); err != nil {
		t.Fatalf("a running member's own copy: %v", err)
	}
	m.Close()
	if _, err := m.LocalPrefix(ctx, "/x/"); !errors.Is(err, etcdmember.ErrStopped) {
		t.Fatalf("after the stop: %v, want ErrStopped", err)
	}
}
