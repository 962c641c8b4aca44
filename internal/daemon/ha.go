package daemon

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/cluster"
	"github.com/ringfence/ringfence/internal/ha"
	"github.com/ringfence/ringfence/internal/procfs"
)

// HA's timings (docs/cluster.md has the timeline). The fence deadline
// is the last renewal's send time plus the lease TTL minus fenceMargin;
// a survivor acts haGuard after it saw the owner key go, and the n-th
// survivor in placement's order haStagger later than the one before it
// (the first may have failed to start the domain).
const (
	fenceMargin = 3 * time.Second
	haGuard     = 2 * time.Second
	haStagger   = 3 * time.Second
	haTick      = time.Second
	// haRefusedFor: a survivor whose start failed leaves the domain to
	// the others this long.
	haRefusedFor = 30 * time.Second
	// haConflict: a running HA domain another host owns this long is a
	// stale copy, fenced (see conflictLasts).
	haConflict = 5 * time.Second
	// relaunchFor: a domain fenced here is started again here (its lease
	// outlived the fence) only within this time of the fence.
	relaunchFor = 2 * time.Minute
)

// haRuntime is this host's HA: its fencing (the Fencer and the guard
// process), its owner keys, and its part as a survivor.
type haRuntime struct {
	s      *Server
	files  ha.Files
	fencer *ha.Fencer

	fenceMu  sync.Mutex // see takeGuardFence
	mu       sync.Mutex
	owners   map[string]string // the owner keys, as last read
	readAt   time.Time         // when owners was read (zero: never)
	pending  map[string]*takeover
	refused  map[string]time.Time
	conflict map[string]time.Time // running here, owned elsewhere, since
	fenced   []string             // the domains this daemon fenced, last first
	// relaunch: the domains fenced here, since when, until they run
	// again here (restartFenced) or their owner key goes.
	relaunch  map[string]time.Time
	guardCmd  *exec.Cmd
	watching  bool      // an owner-key watch runs
	lastFence time.Time // when this daemon last fenced
}

// takeover is an HA domain whose owner key went away: a survivor's
// candidate once haGuard has passed.
type takeover struct {
	from string
	gone int64 // the delete's revision (0: found by a scan)
	seen time.Time
}

// FenceGuardVerb runs the fence guard (FenceGuardMain), a hidden verb
// the daemon starts itself.
const FenceGuardVerb = ha.GuardVerb

// FenceGuardMain is the fence guard process: args[0] is its directory.
func FenceGuardMain(args []string) int {
	if len(args) != 1 {
		return 2
	}
	if err := ha.RunGuard(args[0]); err != nil {
		return 1
	}
	return 0
}

// newHA makes this host's HA side; start runs it once the cluster is
// open (its fence deadline follows the cluster's lease renewals).
func (s *Server) newHA() *haRuntime {
	h := &haRuntime{s: s, files: ha.Files{Dir: filepath.Join(s.cfg.StateDir, "ha")},
		owners: map[string]string{}, pending: map[string]*takeover{}, refused: map[string]time.Time{}, conflict: map[string]time.Time{}}
	os.MkdirAll(h.files.Dir, 0o700)
	h.relaunch = h.files.ReadRelaunch(relaunchFor)
	h.fencer = &ha.Fencer{TTL: cluster.LeaseTTL, Margin: fenceMargin, Files: h.files, Log: s.log,
		OnFence: func(ds []string, why string) { h.noteFenced(ds, why, "daemon", time.Now()) }}
	return h
}

func (h *haRuntime) start(ctx context.Context) {
	h.s.mgr.SetHAGate(h.allows)
	h.s.mgr.SetHALost(h.lost)
	h.fencer.Start(ctx)
	go h.loop(ctx)
	go h.takeovers(ctx)
	go h.guardFences(ctx)
}

// guardFences announces the fence guard's fences, apart from the loop:
// the loop waits on etcd, which is unreachable exactly when the guard
// fences, and a fence is announced when it happens.
func (h *haRuntime) guardFences(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
		h.takeGuardFence()
	}
}

// takeGuardFence notes the guard's record of a fence, if there is one.
// Reading and noting are one step under fenceMu: the loop takes it too
// before it releases the keys of domains not running, so a fenced
// domain is always in h.relaunch by then (else its key would be
// released as for a stop on purpose).
func (h *haRuntime) takeGuardFence() {
	h.fenceMu.Lock()
	defer h.fenceMu.Unlock()
	if f, ok := h.files.ReadFenced(); ok && !h.fencedAlready(f) {
		h.noteFenced(f.Domains, "the fence guard killed them at the fence deadline (no lease renewal; the daemon stopped, hung or late)", f.By, time.Unix(0, f.AtNs))
	}
}

// allows is the domain manager's gate for HA domains: a restart only
// while this host held the owner key at the last read and its fence
// deadline has not passed; an admin's start only when no other host
// owns the domain and the cluster was read lately (no quorum, no
// start).
func (h *haRuntime) allows(name string, restart bool) bool {
	h.mu.Lock()
	owner, fresh := h.owners[name], time.Since(h.readAt) < 3*haTick
	h.mu.Unlock()
	me := h.s.cluster.Name()
	if !h.s.cluster.In() {
		return true
	}
	if restart {
		// While the fence deadline holds, this host's lease holds, and
		// with it its owner key: nobody else can have taken the domain
		// (an etcd election that makes the owner keys unreadable for a
		// while does not stop a guest's reboot).
		d, _ := h.fencer.Deadline()
		return owner == me && !d.IsZero() && time.Now().Before(d)
	}
	return fresh && (owner == "" || owner == me)
}

// lost: an HA domain found dead at this daemon's start is started again
// here like one fenced here (restartFenced: only while this host's lease
// and owner key outlived it); if the lease ended, the key went with it
// and a survivor has the domain.
func (h *haRuntime) lost(name string) {
	h.mu.Lock()
	if _, ok := h.relaunch[name]; !ok {
		h.relaunch[name] = time.Now()
		h.saveRelaunchLocked()
	}
	h.mu.Unlock()
}

// noteFenced records and announces a fence.
func (h *haRuntime) noteFenced(ds []string, why, by string, at time.Time) {
	if len(ds) == 0 {
		return
	}
	h.mu.Lock()
	h.fenced = append(append([]string(nil), ds...), h.fenced...)
	h.lastFence = time.Now()
	for _, d := range ds {
		h.relaunch[d] = h.lastFence
	}
	h.saveRelaunchLocked()
	if len(h.fenced) > 20 {
		h.fenced = h.fenced[:20]
	}
	h.mu.Unlock()
	ev := api.HAFenced{Host: h.s.cluster.Name(), Domains: ds, Reason: why, By: by, AtNs: at.UnixNano()}
	h.s.log.Warn(api.EvHAFenced, "host", ev.Host, "domains", ds, "reason", why, "by", by, "at_ns", ev.AtNs)
	h.publish(api.EvHAFenced, "", ev)
}

// fencedAlready: the daemon announced the same fence itself (both
// fire at one deadline; the guard's is then not announced again).
func (h *haRuntime) fencedAlready(f ha.Fenced) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.lastFence) > 5*time.Second {
		return false
	}
	for _, d := range f.Domains {
		if !slices.Contains(h.fenced, d) {
			return false
		}
	}
	return true
}

func (h *haRuntime) publish(action, domain string, detail any) {
	b, _ := json.Marshal(detail)
	if h.s.bus != nil {
		h.s.bus.Publish(api.Event{Type: api.EventHA, Action: action, Domain: domain, Detail: string(b)})
	}
}

// loop keeps, every haTick, the owner keys of this host's running HA
// domains, the guard's list of their QEMUs, the records of domains
// another host took, and the survivors' scan.
func (h *haRuntime) loop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(haTick):
		}
		h.takeGuardFence()
		if !h.s.cluster.In() {
			os.Remove(h.files.Plan()) // the guard ends with it
			continue
		}
		h.ensureGuard()
		h.guardLocal(ctx)
		owners, rev, err := h.s.cluster.Owners(ctx)
		if err != nil {
			continue
		}
		h.mu.Lock()
		h.owners, h.readAt = owners, time.Now()
		h.mu.Unlock()
		h.watch(ctx, rev)
		go h.keepLeaderOff(ctx, owners)
		h.claimAndRelease(ctx, owners)
		h.survey(ctx, owners)
	}
}

// keepLeaderOff keeps etcd's leader on a host with the fewest HA guests
// (cluster.KeepLeaderOffHA says why).
func (h *haRuntime) keepLeaderOff(ctx context.Context, owners map[string]string) {
	counts := map[string]int{}
	for _, host := range owners {
		counts[host]++
	}
	if _, err := h.s.cluster.KeepLeaderOffHA(ctx, counts); err != nil {
		h.s.log.Warn("cluster: keeping etcd's leader off the HA hosts", "err", err)
	}
}

// guardLocal tells the Fencer (and so the guard) every running HA
// QEMU here: whatever the cluster says, a running HA guest is fenced
// at the deadline.
func (h *haRuntime) guardLocal(ctx context.Context) {
	var procs []ha.Proc
	for _, d := range h.s.mgr.List(false) {
		if !d.Spec.HA || d.PID == 0 {
			continue
		}
		st, err := procfs.ReadStat(d.PID, 0)
		if err != nil {
			continue
		}
		procs = append(procs, ha.Proc{Domain: d.Spec.Name, PID: d.PID, Start: st.StartTime})
	}
	h.fencer.Guard(procs)
}

// claimAndRelease keeps an owner key, on this host's lease, for every
// HA domain running here, fences one another host owns, and deletes the
// keys of those stopped here on purpose.
func (h *haRuntime) claimAndRelease(ctx context.Context, owners map[string]string) {
	me := h.s.cluster.Name()
	running := map[string]bool{}
	started := map[string]time.Time{}
	for _, d := range h.s.mgr.List(false) {
		if !d.Spec.HA || d.PID == 0 {
			continue
		}
		name := d.Spec.Name
		running[name], started[name] = true, d.StartedAt
		owner, err := h.s.cluster.ClaimOwner(ctx, name)
		if err != nil || owner == me || !h.conflictLasts(name) {
			continue
		}
		// Another host took it: this copy must not run on.
		st, _ := procfs.ReadStat(d.PID, 0)
		h.noteFenced([]string{name}, "the cluster gave it to "+owner, "daemon", time.Now())
		ha.Kill([]ha.Proc{{Domain: name, PID: d.PID, Start: st.StartTime}})
	}
	h.takeGuardFence() // a fence since the loop's start is noted before any release
	for name, owner := range owners {
		if owner == me && !running[name] && !h.restartFenced(ctx, name) {
			h.s.cluster.ReleaseOwner(ctx, name)
		}
	}
	h.mu.Lock()
	for name := range h.conflict {
		if !running[name] || owners[name] == me {
			delete(h.conflict, name)
		}
	}
	n := len(h.relaunch)
	for name, since := range h.relaunch {
		// Running again means started after the fence: the list above
		// may still show the QEMU the fence has just killed.
		if owners[name] != me || running[name] && started[name].After(since) {
			delete(h.relaunch, name)
		}
	}
	if len(h.relaunch) != n {
		h.saveRelaunchLocked()
	}
	h.mu.Unlock()
}

func (h *haRuntime) forgetRelaunch(name string) {
	h.mu.Lock()
	delete(h.relaunch, name)
	h.saveRelaunchLocked()
	h.mu.Unlock()
}

// saveRelaunchLocked keeps h.relaunch in STATE/ha (h.mu held).
func (h *haRuntime) saveRelaunchLocked() {
	if err := h.files.WriteRelaunch(h.relaunch); err != nil {
		h.s.log.Warn("ha: recording the domains fenced here", "err", err)
	}
}

// restartFenced starts again, here, an HA domain this host fenced while
// its lease outlived the fence (a daemon stopped and resumed, a cut that
// healed before the expiry, an etcd election longer than the deadline),
// and reports whether the owner key is to be kept. The key is still on
// this host's lease, so no survivor can have taken the domain (a
// takeover needs the key gone): releasing it, as for a domain stopped on
// purpose, left the guest running nowhere (the HA soak's lost guests).
// It starts only once a renewal has succeeded again (the fence deadline
// ahead); until then the key is kept, and if the lease ends first the
// key goes with it and a survivor takes over.
func (h *haRuntime) restartFenced(ctx context.Context, name string) bool {
	h.mu.Lock()
	since, ok := h.relaunch[name]
	h.mu.Unlock()
	if !ok || time.Since(since) > relaunchFor {
		return false
	}
	// The deadline itself, not whether one is kept for running guests:
	// after the fence none runs here, and that is the point.
	if d, _ := h.fencer.Deadline(); d.IsZero() || !time.Now().Before(d) {
		return true
	}
	if dom, err := h.s.mgr.Get(name); err != nil || dom.PID != 0 {
		return err == nil
	}
	if _, err := h.s.mgr.Start(ctx, name, false); err != nil {
		h.s.log.Warn("ha: starting again a domain fenced here failed; releasing it", "name", name, "err", err)
		h.forgetRelaunch(name)
		return false
	}
	h.forgetRelaunch(name)
	h.s.log.Info("ha: a domain fenced here started again here: this host's lease outlived the fence, so it still owns it", "name", name)
	return true
}

// conflictLasts notes that another host owns a domain running here and
// reports whether that has lasted haConflict: a domain migrated in is
// owned by its source until the source's next round releases it; one
// still owned elsewhere after that is a stale copy.
func (h *haRuntime) conflictLasts(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	since, ok := h.conflict[name]
	if !ok {
		h.conflict[name] = time.Now()
		return false
	}
	return time.Since(since) >= haConflict
}

// ensureGuard starts the fence guard if none runs: its own session, so
// it outlives the daemon (a kill, a stop) and is in no signal of its.
func (h *haRuntime) ensureGuard() {
	if h.files.GuardPID() != 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.guardCmd != nil && h.guardCmd.ProcessState == nil && procfs.Alive(h.guardCmd.Process.Pid, 0) {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		h.s.log.Error("ha: no fence guard", "err", err)
		return
	}
	logf, _ := os.OpenFile(filepath.Join(h.files.Dir, "guard.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	argv := ha.GuardCommand(exe, h.files.Dir)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		h.s.log.Error("ha: starting the fence guard", "err", err)
		return
	}
	if logf != nil {
		logf.Close()
	}
	h.guardCmd = cmd
	go cmd.Wait()
	h.s.log.Info("ha: fence guard started", "pid", cmd.Process.Pid, "binary", argv[0])
}

// status is this host's HA for `cluster status`.
func (h *haRuntime) status() *api.HAStatus {
	out := &api.HAStatus{Guests: []string{}, GuardPID: h.files.GuardPID(), Watchdog: ha.WatchdogState()}
	for _, d := range h.s.mgr.List(false) {
		if d.Spec.HA && d.PID != 0 {
			out.Guests = append(out.Guests, d.Spec.Name)
		}
	}
	if d, ok := h.fencer.Deadline(); ok && !d.IsZero() {
		left := time.Until(d).Seconds()
		out.DeadlineInSec = &left
	}
	h.mu.Lock()
	out.Fenced = append(out.Fenced, h.fenced...)
	h.mu.Unlock()
	return out
}
