package netmgr

// A virtual NIC's whole life on the host is owned here: its tap on the
// bridge, its rate limit, its address (ip= or a lease) and anti-spoofing
// filter, the fd QEMU gets for a hot-plug, its counters, and its end. The
// domain manager names taps and says when; it never touches one itself.

import (
	"context"
	"fmt"
	"os"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/network"
	"github.com/ringfence/ringfence/internal/revert"
)

// CheckVif says whether vif v can be attached: its bridge (a managed
// network's, or the name itself) exists. A missing xenbr0 is most often
// a Xen file's vif with no bridge=, which goes there as in xl: said.
func (m *Manager) CheckVif(v api.Vif) error {
	err := network.CheckBridge(m.Bridge(v.Bridge))
	if err != nil && (v.Bridge == "" || v.Bridge == api.DefaultBridge) && !network.Exists(api.DefaultBridge) {
		return fmt.Errorf("%w (%s is where a vif with no bridge= goes, as in xl)", err, api.DefaultBridge)
	}
	return err
}

// Attach makes vif v's tap on its bridge with its rate limit, address and
// filter, for domain. On error nothing of it is left.
func (m *Manager) Attach(ctx context.Context, domain, tap string, v api.Vif) error {
	r := revert.New()
	defer r.Fail()
	if err := network.CreateTap(tap, m.Bridge(v.Bridge)); err != nil {
		return err
	}
	r.Add(func() { network.DeleteTap(tap) })
	if v.MTU > 0 {
		if err := network.SetMTU(tap, v.MTU); err != nil {
			return fmt.Errorf("mtu=%d: %w", v.MTU, err)
		}
	}
	if v.RateBytes > 0 {
		if err := network.SetRate(tap, v.RateBytes, v.RateIntervalUS); err != nil {
			return fmt.Errorf("rate=%s: %w", v.Rate, err)
		}
	}
	if err := m.plug(ctx, domain, tap, v); err != nil {
		return err
	}
	r.Success()
	return nil
}

// Readopt takes back a tap that outlived a daemon (its guest kept
// running): its address and filter are registered again.
func (m *Manager) Readopt(ctx context.Context, domain, tap string, v api.Vif) error {
	return m.plug(ctx, domain, tap, v)
}

// Detach removes a tap and what was registered for it; a lease is kept
// for leaseTime so the domain gets its address back.
func (m *Manager) Detach(tap string) error {
	err := network.DeleteTap(tap)
	m.unplug(tap)
	return err
}

// OpenTap opens an attached tap for a VMM that takes it by fd (hot-plug).
func (m *Manager) OpenTap(tap string) (*os.File, error) { return network.OpenTap(tap) }

// Counters are a tap's host-side bytes received and sent.
func (m *Manager) Counters(tap string) (rxBytes, txBytes, rxPackets, txPackets int64) {
	st := network.TapCounters(tap)
	return st.RxBytes, st.TxBytes, st.RxPackets, st.TxPackets
}

// AllCounters are every tap's Counters at once (one netlink dump), by
// tap: rx bytes, tx bytes, rx packets, tx packets.
func (m *Manager) AllCounters() map[string][4]int64 {
	all := network.AllTapCounters()
	out := make(map[string][4]int64, len(all))
	for name, st := range all {
		out[name] = [4]int64{st.RxBytes, st.TxBytes, st.RxPackets, st.TxPackets}
	}
	return out
}

// Throttle shapes a running vif's tap to bytesPerSec both ways (a
// transfer quota crossed), through the same limiter as rate=; it is
// idempotent, and the tap's next incarnation gets its rate= again.
func (m *Manager) Throttle(tap string, bytesPerSec int64) error {
	if bytesPerSec <= 0 {
		return nil
	}
	if network.Rate(tap) == uint64(bytesPerSec) {
		return nil
	}
	// 50 ms of traffic per interval, as Xen's rate= default.
	return network.SetRate(tap, bytesPerSec/20, 50000)
}

// Rate is a tap's shaping rate in bytes per second (0: none).
func (m *Manager) Rate(tap string) int64 { return int64(network.Rate(tap)) }
