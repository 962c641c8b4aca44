package domain

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/migration"
	"github.com/ringfence/ringfence/internal/procfs"
)

// Live migration between two daemons: the protocol and its transport are
// internal/migration; the source's steps are outgoing (migrate_out.go),
// the destination's incoming (migrate_in.go), the disk copy's
// migrate_storage.go. Here: what both sides and the daemon share.

// MigrateOptions tune an outgoing migration.
type MigrateOptions struct {
	DowntimeMs int
	// Plain skips QEMU's TLS on the data connection (still token-bound to
	// the authenticated control channel): QEMU 7.2 encrypts page by page
	// and moves ~2 Gbit/s here, a tenth of a plain socket.
	Plain bool
	// WithStorage copies the writable disks live (no shared storage);
	// StorageDir places them on the destination.
	WithStorage bool
	StorageDir  string
}

// MigrationPeer is the destination as the source sees it.
type MigrationPeer struct {
	Control net.Conn // authenticated control channel
	// Hostname is the name the destination's certificate carries.
	Hostname string
	// DialData opens the data connection named by token: mutual TLS, or
	// with plain a *net.TCPConn that QEMU may use directly.
	DialData func(ctx context.Context, token string, plain bool) (net.Conn, error)
}

// pskUser is the identity QEMU's NBD client presents with the key.
const pskUser = "ringfence"

// pskCreds writes QEMU's tls-creds-psk directory (keys.psk) for one disk
// copy, readable only by the domain's QEMU user (uid); the engine removes
// it once QEMU has loaded it.
func (m *Manager) pskCreds(key string, uid int) (string, error) {
	if len(key) != 64 || strings.Trim(key, "0123456789abcdef") != "" {
		return "", fmt.Errorf("the destination sent no usable disk-copy key")
	}
	dir, err := os.MkdirTemp("", "ringfence-nbdpsk-")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "keys.psk")
	if err := os.WriteFile(p, []byte(pskUser+":"+key+"\n"), 0o400); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	for _, f := range []string{p, dir} {
		if err := os.Chown(f, uid, uid); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("handing the disk-copy key to QEMU's user: %w", err)
		}
	}
	return dir, nil
}

// takeLocks (re)takes the image locks of a running instance's disks.
func (m *Manager) takeLocks(inst engine.Instance, spec api.DomainSpec) error {
	dl, ok := inst.(engine.DiskLocker)
	if !ok {
		return nil
	}
	return dl.TakeDiskLocks(m.launchSpec(spec, "", 0).Disks)
}

// uidOf is the uid of a domain's running QEMU (0: root or none).
func (m *Manager) uidOf(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d, ok := m.doms[name]; ok {
		return int(d.uid.Load())
	}
	return 0
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// CancelMigration stops an outgoing migration; the domain keeps running
// here.
func (m *Manager) CancelMigration(name string) error {
	d, err := m.get(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.migrating || d.cancelMig == nil {
		return api.Errorf(api.ErrConflict, "%s is not being migrated", name)
	}
	d.cancelMig(errMigrationCancelled)
	return nil
}

// loadStream feeds src into the VM through the pipe pr/pw. If the stream
// breaks, or ends and QEMU has not finished loading soon after (QEMU 7.2
// can spin on a truncated incoming stream instead of failing), the load is
// abandoned so the caller's revert removes the half-made domain.
func loadStream(ctx context.Context, mig engine.Migratable, pr, pw *os.File, src io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, err := io.Copy(pw, src)
		pw.Close()
		if err != nil {
			cancel()
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			cancel()
		}
	}()
	err := mig.MigrateFrom(ctx, pr, engine.IncomingOptions{})
	pr.Close()
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("the state stream broke or ended early: %w", err)
	}
	return err
}

// DeliverMigrationData hands a data connection to the incoming migration
// that gave out token; false if none waits for it (the caller closes it).
// The memory stream's token works once; NBD connections (token+".nbd")
// are relayed to the destination QEMU's NBD server.
func (m *Manager) DeliverMigrationData(token string, c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if base, ok := strings.CutSuffix(token, migration.NBDSuffix); ok {
		im, ok := m.migData[base]
		if !ok || im.nbdSock == "" {
			return false
		}
		go migration.RelayTo(c, im.nbdSock)
		return true
	}
	im, ok := m.migData[token]
	if !ok || im.data == nil {
		return false
	}
	im.data <- c
	im.data = nil
	return true
}

// chargeToHost waits (briefly) for QEMU's thread named comm to appear and
// moves it to the host's share of CPU (see host.Cgroups.HostThread).
func (m *Manager) chargeToHost(ctx context.Context, pid int, comm string) {
	for i := 0; i < 200 && ctx.Err() == nil; i++ {
		if tid := procfs.ThreadNamed(pid, comm); tid != 0 {
			if err := m.o.Cgroups.HostThread(tid); err != nil {
				m.o.Log.Warn("charging the migration thread to the host", "err", err)
			}
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
