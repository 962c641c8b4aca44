package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/internal/safefile"
	"github.com/ringfence/ringfence/internal/store"
)

// A renewal leaves the old certificate valid until it expires, and etcd
// checks only the CA: so the renewing host puts the old serial under
// cluster/superseded/NAME/SERIAL, on a lease that ends when that
// certificate does, and every member's revocation list holds it too.
// Unlike a revocation, no member restarts for it: the old certificate's
// open connections are the renewing host's own, and a restart would
// delay every host's lease renewals (see the fence deadline).
const supersededPrefix = "cluster/superseded/"

// supersededCert is a replaced certificate of this host.
type supersededCert struct {
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
}

// supersededPath holds this host's replaced certificates not yet in etcd
// (a renewal while etcd is unreachable is recorded when it answers).
func (c *Cluster) supersededPath() string { return filepath.Join(c.cfg.Dir, "superseded.json") }

// Supersede records that this host's certificate of that serial was
// replaced: kept here at once, put into the cluster now or, if etcd does
// not answer, at a later heartbeat. Outside a cluster it does nothing.
func (c *Cluster) Supersede(ctx context.Context, serial string, notAfter time.Time) error {
	if !c.In() {
		return nil
	}
	c.supMu.Lock()
	defer c.supMu.Unlock()
	list, err := c.readSuperseded()
	if err != nil {
		return err
	}
	list = append(list, supersededCert{Serial: serial, NotAfter: notAfter})
	if err := c.writeSuperseded(list); err != nil {
		return err
	}
	if err := c.flushSupersededLocked(ctx); err != nil {
		c.cfg.Log.Warn("cluster: the replaced certificate's serial goes into the revocation list when etcd answers", "serial", serial, "err", err)
	}
	return nil
}

// flushSuperseded puts the replaced certificates kept here into etcd
// (the heartbeat's, in the background: nothing to do is the usual case).
func (c *Cluster) flushSuperseded(ctx context.Context) {
	if !c.supPending.Load() || !c.supMu.TryLock() {
		return
	}
	defer c.supMu.Unlock()
	if err := c.flushSupersededLocked(ctx); err != nil {
		c.cfg.Log.Debug("cluster: recording a replaced certificate", "err", err)
	}
}

func (c *Cluster) flushSupersededLocked(ctx context.Context) error {
	list, err := c.readSuperseded()
	if err != nil || len(list) == 0 {
		c.supPending.Store(err != nil)
		return err
	}
	cs, err := c.conn()
	if err != nil {
		c.supPending.Store(true)
		return err
	}
	var left []supersededCert
	var last error
	for _, e := range list {
		ttl := time.Until(e.NotAfter)
		if ttl <= 0 {
			continue // expired: etcd refuses it by itself
		}
		if err := putSuperseded(ctx, cs, e, ttl); err != nil {
			left, last = append(left, e), err
		}
	}
	if err := c.writeSuperseded(left); err != nil {
		return err
	}
	c.supPending.Store(len(left) > 0)
	if last == nil && c.snapshot().Etcd == RoleMember { // this member refuses it at once
		if _, err := c.syncCRL(ctx, cs.s.Client()); err != nil {
			return err
		}
	}
	return last
}

// putSuperseded writes one replaced serial on a lease of its own that
// ends with the certificate.
func putSuperseded(ctx context.Context, cs *clusterStore, e supersededCert, ttl time.Duration) error {
	cctx, cancel := etcdCtx(ctx)
	defer cancel()
	lease, err := cs.s.Grant(cctx, ttl)
	if err != nil {
		return err
	}
	return cs.s.Update(cctx, func(tx store.Tx) error {
		return tx.PutLeased(supersededPrefix+cs.me+"/"+e.Serial, []byte(e.Serial), lease)
	})
}

func (c *Cluster) readSuperseded() ([]supersededCert, error) {
	b, err := os.ReadFile(c.supersededPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var list []supersededCert
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("reading %s: %w (it lists replaced certificates not yet revoked in the cluster; delete it and run `ringfence host renew` again)", c.supersededPath(), err)
	}
	return list, nil
}

func (c *Cluster) writeSuperseded(list []supersededCert) error {
	if len(list) == 0 {
		if err := os.Remove(c.supersededPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	b, _ := json.Marshal(list)
	if err := os.MkdirAll(c.cfg.Dir, 0o700); err != nil {
		return err
	}
	return safefile.WriteFile(c.supersededPath(), b, 0o600)
}
