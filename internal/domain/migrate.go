package domain

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/procfs"
	"github.com/ringfence/ringfence/internal/revert"
)

// Live migration between two daemons. The control channel is a connection
// the caller has already authenticated (mutual TLS); the state itself goes
// on a second connection: by default another mutual-TLS connection between
// the daemons, each relaying to its QEMU through a socket pair (see
// relay.go); with --plain-stream a plain TCP connection handed to the QEMUs
// themselves, token-bound to the control channel.
//
//	source -> dest   {"spec":..., "accel":...}
//	dest -> source   {"ok":true,"token":T}  (validated and admitted)
//	                 or {"error":...}       (nothing was created)
//	source -> dest   data connection named by T (the source QEMU is made
//	                 ready to send while the destination QEMU starts)
//	dest -> source   {"listening":true}     (the source QEMU starts sending)
//	source -> dest   {"go":true}      (the stream is complete; handover)
//	dest -> source   {"running":true} (the guest runs on dest)
//	                 or {"error":...} (dest removed everything)
//
// Before "go", either side closing the control channel aborts: the
// destination drops its half-made domain, the source resumes its guest.
// After "go" only the destination decides: "running" and the source lets
// go; "error" and the source resumes; silence (the link or the
// destination died) and the source keeps its copy paused and says so, as
// the guest may run there. So the guest never runs on two hosts.

type migHeader struct {
	Spec  api.DomainSpec `json:"spec"`
	Accel string         `json:"accel"`
	Plain bool           `json:"plain,omitempty"` // the stream goes without QEMU's TLS
	// Storage lists the disks to copy (--with-storage); StorageDir is
	// where the destination puts them ("" = the same paths).
	Storage    []migDisk `json:"storage,omitempty"`
	StorageDir string    `json:"storage_dir,omitempty"`
}

// migGo is the source's handover: its QEMU has sent everything (and the
// disk copies are final), its guest is stopped and it will not resume it
// unless the destination answers with an error. The destination runs the
// guest only after this; without it (the control channel closes) it drops
// its copy.
type migGo struct {
	Go bool `json:"go"`
}

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

type migReply struct {
	OK      bool   `json:"ok,omitempty"`
	Token   string `json:"token,omitempty"`
	Running bool   `json:"running,omitempty"`
	// DisksReady: the destination's NBD server is up (--with-storage).
	// NBDKey is the pre-shared key its TLS takes, made for this migration
	// and sent over the authenticated control channel (so no host needs
	// the CA key to mint QEMU certificates).
	DisksReady bool   `json:"disks_ready,omitempty"`
	NBDKey     string `json:"nbd_key,omitempty"`
	// Listening: the destination QEMU reads the memory stream; the source
	// starts it only then (see engine.IncomingOptions.Listening).
	Listening bool   `json:"listening,omitempty"`
	Error     string `json:"error,omitempty"`
	Class     string `json:"class,omitempty"`
}

// DataPreface starts a migration data connection; the token follows.
const DataPreface = "RFMIG1 "

func writeLine(w io.Writer, v any) error {
	b, _ := json.Marshal(v)
	_, err := w.Write(append(b, '\n'))
	return err
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

// MigrateOut moves a running domain to the daemon at the other end of p.
func (m *Manager) MigrateOut(ctx context.Context, name string, p MigrationPeer, o MigrateOptions, progress func(api.MigrationProgress)) (api.MigrationResult, error) {
	var res api.MigrationResult
	t0 := time.Now()
	d, err := m.lockRunning(name)
	if err != nil {
		return res, err
	}
	if d.migrating {
		d.mu.Unlock()
		return res, api.Errorf(api.ErrConflict, "%s is already being migrated", name)
	}
	d.migrating = true
	ctx, cancel := context.WithCancel(ctx)
	d.cancelMig = cancel
	inst, spec, accel := d.inst, d.rec.Spec, d.rec.Accel
	d.mu.Unlock()
	defer func() { cancel(); d.mu.Lock(); d.migrating = false; d.cancelMig = nil; d.mu.Unlock() }()
	mig, ok := inst.(engine.Migratable)
	if !ok {
		return res, api.Errorf(api.ErrUnavailable, "this engine cannot migrate domains")
	}
	var disks []migDisk
	var dm engine.DiskMigrator
	if o.WithStorage {
		if dm, ok = inst.(engine.DiskMigrator); !ok {
			return res, api.Errorf(api.ErrUnavailable, "this engine cannot copy disks")
		}
		if disks, err = copiedDisks(spec); err != nil {
			return res, err
		}
	} else if o.StorageDir != "" {
		return res, api.Errorf(api.ErrInvalid, "--storage-dir needs --with-storage")
	}
	conn := p.Control
	br := bufio.NewReader(conn)
	if err := writeLine(conn, migHeader{Spec: spec, Accel: accel, Plain: o.Plain, Storage: disks, StorageDir: o.StorageDir}); err != nil {
		return res, fmt.Errorf("talking to the destination: %w", err)
	}
	var rep migReply
	if err := readReply(br, &rep); err != nil {
		return res, fmt.Errorf("destination: %w", err)
	}
	if !rep.OK {
		return res, &api.RemoteError{Message: "destination refused: " + rep.Error, Class: rep.Class}
	}
	// From here the destination holds a reservation: closing the control
	// channel (deferred by the caller) tells it to drop everything.
	data, err := p.DialData(ctx, rep.Token, o.Plain)
	if err != nil {
		conn.Close()
		return res, fmt.Errorf("opening the migration data connection: %w", err)
	}
	// The relay's own result is not needed: the destination runs the
	// guest only once it has loaded the whole stream.
	df, _, err := streamFile(ctx, data, true)
	if err != nil {
		conn.Close()
		return res, err
	}
	resume := func(why error) (api.MigrationResult, error) {
		conn.Close()
		if len(disks) > 0 {
			dm.AbortMirrors()
		}
		// Only our copy may run: take it (and its images' locks) back. If
		// the locks are gone (the destination holds them: it may run the
		// guest), our copy stays paused.
		if err := m.takeLocks(inst, d.rec.Spec); err != nil {
			d.mu.Lock()
			m.setState(d, api.StatePaused)
			m.save(context.Background(), d)
			d.mu.Unlock()
			return res, api.Errorf(api.ErrConflict, "%v; and the images could not be taken back (%v): %s is paused here; if it runs on the destination, destroy this copy, otherwise `ringfence unpause %s` once the images are free", why, err, name, name)
		}
		if st, err := inst.Status(context.Background()); err == nil && st != engine.RunRunning {
			if rerr := inst.Resume(context.Background()); rerr != nil {
				m.o.Log.Error("resuming after a failed migration", "name", name, "err", rerr)
			}
		}
		return res, why
	}
	// A destination that fails tells us on the control channel; stop our
	// side then instead of waiting for a socket timeout.
	remote := make(chan remoteReply, 1)
	disksReady, listening := make(chan struct{}), make(chan struct{})
	var destErr atomic.Pointer[string]
	var nbdKey string // set before disksReady closes
	go func() {
		var r remoteReply
		for {
			if err := readReply(br, &r.migReply); err != nil {
				r = remoteReply{lost: true, migReply: migReply{Error: err.Error()}}
			}
			if r.DisksReady {
				nbdKey = r.NBDKey
				close(disksReady)
			} else if r.Listening {
				close(listening)
			} else {
				break
			}
		}
		if !r.Running {
			destErr.Store(&r.Error)
			cancel()
		}
		remote <- r
	}()
	if len(disks) > 0 {
		// Connect only once the destination serves the disks: QEMU 7.2's
		// NBD client negotiates inside blockdev-add, blocking its monitor.
		select {
		case <-disksReady:
		case <-ctx.Done():
		case <-time.After(2 * time.Minute):
			cancel()
		}
		var ntls *engine.StreamTLS
		if !o.Plain && ctx.Err() == nil {
			creds, err := m.pskCreds(nbdKey, int(d.uid.Load()))
			if err != nil {
				df.Close()
				return resume(err)
			}
			ntls = &engine.StreamTLS{Dir: creds, Username: pskUser}
		}
		n, err := mirrorOut(ctx, dm, disks, p, rep.Token, ntls, progress)
		if err != nil {
			df.Close()
			if e := destErr.Load(); e != nil {
				return resume(fmt.Errorf("the destination failed (%s); %s keeps running here", *e, name))
			}
			if errors.Is(err, context.Canceled) {
				return resume(api.Errorf(api.ErrConflict, "migration of %s cancelled; it keeps running here", name))
			}
			return resume(fmt.Errorf("copying the disks failed, %s keeps running here: %w", name, err))
		}
		res.DiskBytes = n
	}
	// QEMU is made ready now; it sends only once the destination QEMU
	// reads the stream.
	start := func(ctx context.Context) error {
		select {
		case <-listening:
			if cg := m.o.Cgroups; cg != nil {
				// The thread appears with `migrate`: look for it from now.
				go m.chargeToHost(ctx, inst.PID(), "live_migration")
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Minute):
			return errors.New("the destination did not start listening within 2 minutes")
		}
	}
	stats, merr := mig.MigrateTo(ctx, df, engine.MigrateOptions{DowntimeMs: o.DowntimeMs, Start: start,
		Progress: func(s engine.MigrationStats) {
			if progress != nil {
				progress(api.MigrationProgress(s))
			}
		}})
	df.Close()
	if merr != nil {
		if e := destErr.Load(); e != nil {
			return resume(fmt.Errorf("the destination failed (%s); %s keeps running here", *e, name))
		}
		if errors.Is(merr, context.Canceled) {
			return resume(api.Errorf(api.ErrConflict, "migration of %s cancelled; it keeps running here", name))
		}
		return resume(fmt.Errorf("migration failed, %s keeps running here: %w", name, merr))
	}
	if len(disks) > 0 {
		// Our guest is stopped: finish the mirrors (the copies are now
		// exact) before the handover.
		if err := dm.FinishMirrors(ctx); err != nil {
			return resume(fmt.Errorf("finishing the disk copies failed, %s keeps running here: %w", name, err))
		}
	}
	// A destination that already failed or went away gets no handover.
	select {
	case r := <-remote:
		return resume(fmt.Errorf("the destination failed before the handover (%s); %s keeps running here", r.Error, name))
	default:
	}
	// The images are the destination's from the handover on (same storage
	// on one host, or shared): it takes their locks when it runs the guest.
	if dl, ok := inst.(engine.DiskLocker); ok {
		if err := dl.ReleaseDiskLocks(m.launchSpec(d.rec.Spec, d.rec.Accel, 0).Disks); err != nil {
			return resume(fmt.Errorf("releasing the image locks for the destination failed, %s keeps running here: %w", name, err))
		}
	}
	// The relay (the encrypted stream's last bytes) is not awaited: the
	// destination runs the guest only once it has loaded all of them.
	if err := writeLine(conn, migGo{Go: true}); err != nil {
		return resume(fmt.Errorf("the destination went away, %s keeps running here: %w", name, err))
	}
	var r remoteReply
	select {
	case r = <-remote:
	case <-time.After(2 * time.Minute):
		r = remoteReply{lost: true, migReply: migReply{Error: "no answer within 2 minutes"}}
	}
	if r.lost {
		// Handed over but unconfirmed: the guest may run there. Never
		// resume it here on a guess; record it as what it is, paused.
		d.mu.Lock()
		m.setState(d, api.StatePaused)
		m.save(context.Background(), d)
		d.mu.Unlock()
		return res, api.Errorf(api.ErrConflict, "lost contact with the destination after handing %s over (%s): it is paused here; "+
			"if it runs on the destination, destroy this copy, otherwise `ringfence unpause %s`", name, r.Error, name)
	}
	if !r.Running {
		return resume(fmt.Errorf("the destination did not take over (%s); %s keeps running here", r.Error, name))
	}
	// Total time ends when the guest runs there; letting go of our
	// (already stopped) copy is cleanup after that.
	res.TotalMs = time.Since(t0).Milliseconds()
	// The destination runs the guest: let go of ours, at the lowest CPU
	// priority (freeing its RAM takes a while).
	if cg := m.o.Cgroups; cg != nil {
		cg.Deprioritize(name)
	}
	if err := m.Destroy(context.Background(), name); err != nil {
		m.o.Log.Error("destroying the migrated-away copy", "name", name, "err", err)
	}
	res.QEMUTotalMs = stats.TotalMs
	res.DowntimeMs = stats.DowntimeMs
	res.TransferredB = stats.TransferredB
	return res, nil
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
	d.cancelMig()
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

// remoteReply is the destination's last word; lost: the channel broke
// instead.
type remoteReply struct {
	migReply
	lost bool
}

// maxHeader bounds a migration header line (a domain spec).
const maxHeader = 1 << 20

// readBounded reads one line of at most max bytes.
func readBounded(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, fmt.Errorf("a migration message over %d bytes", max)
		}
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

func readReply(br *bufio.Reader, rep *migReply) error {
	line, err := readBounded(br, maxHeader)
	if err != nil {
		return fmt.Errorf("connection closed: %w", err)
	}
	*rep = migReply{}
	return json.Unmarshal(line, rep)
}

// inMig is an incoming migration waiting for its data connections.
type inMig struct {
	data    chan net.Conn
	nbdSock string // where NBD connections are relayed ("" = none expected)
}

// DeliverMigrationData hands a data connection to the incoming migration
// that gave out token; false if none waits for it (the caller closes it).
// The memory stream's token works once; NBD connections (token+".nbd")
// are relayed to the destination QEMU's NBD server.
func (m *Manager) DeliverMigrationData(token string, c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if base, ok := strings.CutSuffix(token, nbdSuffix); ok {
		im, ok := m.migData[base]
		if !ok || im.nbdSock == "" {
			return false
		}
		go relay(c, im.nbdSock)
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

// MigrateIn receives a domain on conn (the destination side).
func (m *Manager) MigrateIn(ctx context.Context, conn net.Conn) error {
	tl := newTimeline()
	br := bufio.NewReader(conn)
	// The header is a line of JSON from the peer: bounded in size and time
	// (the connection left the HTTP server's limits when it was upgraded).
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := readBounded(br, maxHeader)
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		return err
	}
	var hdr migHeader
	fail := func(err error) error {
		_, class := api.StatusOf(err)
		writeLine(conn, migReply{Error: err.Error(), Class: class})
		return err
	}
	if err := json.Unmarshal(line, &hdr); err != nil {
		return fail(api.Errorf(api.ErrInvalid, "bad migration header: %v", err))
	}
	spec := hdr.Spec
	plan, err := m.planStorage(&spec, hdr.Storage, hdr.StorageDir)
	if err != nil {
		return fail(err)
	}
	skip := map[string]bool{}
	for _, d := range plan {
		skip[d.ID] = true
	}
	accel, err := m.validateExcept(&spec, skip, true)
	if err != nil {
		return fail(err)
	}
	if accel != hdr.Accel {
		return fail(api.Errorf(api.ErrInvalid, "%s runs under %s there and %s here: its CPU state cannot move", spec.Name, hdr.Accel, accel))
	}
	tb := make([]byte, 24)
	rand.Read(tb)
	token := hex.EncodeToString(tb)
	dataCh := make(chan net.Conn, 1)
	im := &inMig{data: dataCh}
	var nbdL *net.UnixListener
	if len(plan) > 0 {
		if nbdL, err = nbdListener(filepath.Join(m.o.RunDir, "migrate", token[:12])); err != nil {
			return fail(err)
		}
		defer os.RemoveAll(filepath.Dir(nbdL.Addr().String()))
		defer nbdL.Close()
		im.nbdSock = nbdL.Addr().String()
	}
	m.mu.Lock()
	m.migData[token] = im
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.migData, token)
		m.mu.Unlock()
		select {
		case c := <-dataCh:
			c.Close()
		default:
		}
	}()
	// The source closing the control channel before we run the guest
	// aborts the load (its QEMU failed, or it was cancelled or died).
	aborted := make(chan struct{})
	handover := make(chan struct{})
	okSent, disksMade := false, false
	admitted := func(*revert.Reverter) error {
		if len(plan) > 0 {
			if err := createDisks(plan); err != nil {
				return err
			}
			disksMade = true
		}
		if err := writeLine(conn, migReply{OK: true, Token: token}); err != nil {
			return err
		}
		okSent = true
		go func() {
			defer close(aborted)
			for {
				line, err := readBounded(br, maxHeader)
				if err != nil {
					return
				}
				var g migGo
				if json.Unmarshal(line, &g) == nil && g.Go {
					close(handover)
				}
			}
		}()
		return nil
	}
	incoming := func(ctx context.Context, mig engine.Migratable) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-aborted:
				cancel()
			case <-ctx.Done():
			}
		}()
		var dm engine.DiskMigrator
		wait := 30 * time.Second
		if len(plan) > 0 {
			var ok bool
			if dm, ok = mig.(engine.DiskMigrator); !ok {
				return api.Errorf(api.ErrUnavailable, "this engine cannot receive disks")
			}
			lf, err := nbdL.File()
			if err != nil {
				return err
			}
			var ntls *engine.StreamTLS
			nbdKey := ""
			if !hdr.Plain {
				nbdKey = randomHex(32)
				creds, err := m.pskCreds(nbdKey, m.uidOf(spec.Name))
				if err != nil {
					lf.Close()
					return err
				}
				ntls = &engine.StreamTLS{Dir: creds}
			}
			ids := make([]string, len(plan))
			for i, d := range plan {
				ids[i] = d.ID
			}
			err = dm.ServeDisks(ctx, lf, ids, ntls)
			lf.Close()
			if err != nil {
				return err
			}
			defer dm.StopServingDisks()
			if err := writeLine(conn, migReply{DisksReady: true, NBDKey: nbdKey}); err != nil {
				return err
			}
			// The memory stream follows the disk copy, however long.
			wait = 24 * time.Hour
		}
		tl.mark("incoming")
		var data net.Conn
		select {
		case data = <-dataCh:
		case <-ctx.Done():
			return fmt.Errorf("the source went away before sending the state")
		case <-time.After(wait):
			return fmt.Errorf("the source did not open the data connection within %v", wait)
		}
		// The stream must come the way the header said: a TLS migration
		// never accepts a plain connection.
		if _, isTCP := data.(*net.TCPConn); isTCP != hdr.Plain {
			data.Close()
			return fmt.Errorf("the data connection is not the kind announced (plain=%v)", hdr.Plain)
		}
		f, relayed, err := streamFile(ctx, data, false)
		if err != nil {
			return err
		}
		defer f.Close()
		var loaded atomic.Bool
		if relayed != nil {
			// A broken relay is a broken stream: stop loading (QEMU 7.2
			// may wait forever on a truncated one).
			go func() {
				if err := <-relayed; err != nil && !loaded.Load() {
					cancel()
				}
			}()
		}
		tl.mark("data")
		listening := func() {
			tl.mark("listening")
			if err := writeLine(conn, migReply{Listening: true}); err != nil {
				cancel()
			}
		}
		if err := mig.MigrateFrom(ctx, f, engine.IncomingOptions{Listening: listening}); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("the source stopped the migration: %w", err)
			}
			return err
		}
		loaded.Store(true)
		tl.mark("loaded")
		// Run the guest only once the source hands it over (after the
		// disk copies are final, with --with-storage).
		wait = time.Minute
		if len(plan) > 0 {
			wait = 5 * time.Minute
		}
		select {
		case <-handover:
		default:
			select {
			case <-handover:
			case <-ctx.Done():
				// A handover followed at once by the channel closing
				// still counts.
				select {
				case <-handover:
				default:
					return fmt.Errorf("the source stopped before handing the guest over")
				}
			case <-time.After(wait):
				return fmt.Errorf("the source did not hand the guest over within %v", wait)
			}
		}
		if len(plan) > 0 {
			dm.StopServingDisks()
		}
		return nil
	}
	tl.mark("validated")
	if _, err := m.create(ctx, spec, accel, startOpts{admitted: admitted, incoming: incoming, tl: tl, kind: kindMigrate}); err != nil {
		if disksMade {
			removeDisks(plan)
		}
		if !okSent {
			return fail(err)
		}
		writeLine(conn, migReply{Error: err.Error()})
		return err
	}
	if err := writeLine(conn, migReply{Running: true}); err != nil {
		// The source handed the guest over and keeps its copy paused
		// until told otherwise: ours is the one that runs.
		m.o.Log.Error("could not confirm a migration to the source; the guest runs here, the source keeps a paused copy", "name", spec.Name, "err", err)
		return err
	}
	tl.mark("confirmed")
	tl.log(m.o.Log, "domain migrated in", spec.Name)
	return nil
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
