package domain

// A domain's virtual NICs as the manager sees them: it names each tap and
// says when it is made or removed; everything a tap is on the host (bridge
// port, rate limit, address, filter, lease) belongs to the Networks
// owner (internal/netmgr).

import (
	"context"
	"fmt"
	"os"

	"github.com/ringfence/ringfence/internal/api"
)

// Networks is the owner of virtual NICs and networks.
type Networks interface {
	// Bridge maps a vif's bridge= to the bridge to use: a managed
	// network's bridge, or the name itself.
	Bridge(name string) string
	// CheckVif says whether a vif can be attached (its bridge exists).
	CheckVif(v api.Vif) error
	// Attach makes a vif's tap on its bridge with its rate limit, address
	// and filter; on error nothing of it is left. Readopt registers again
	// a tap that outlived a daemon; Detach removes a tap and its filter
	// (a lease is kept a while).
	Attach(ctx context.Context, domain, tap string, v api.Vif) error
	Readopt(ctx context.Context, domain, tap string, v api.Vif) error
	Detach(tap string) error
	// OpenTap opens an attached tap for a hot-plug by fd.
	OpenTap(tap string) (*os.File, error)
	// Counters are a tap's host-side bytes received and sent.
	Counters(tap string) (rxBytes, txBytes, rxPackets, txPackets int64)
	// Addresses are what an attached tap may send from (ip= or its lease).
	Addresses(tap string) []string
	// Network is the managed network a vif's bridge= names (by its
	// name or its bridge), for a provisioned guest's address settings.
	Network(bridge string) (api.Network, bool)
}

// tapName is the host name of domain domid's vif idx, as Xen names it.
func tapName(domid, idx int) string { return fmt.Sprintf("vif%d.%d", domid, idx) }

// errNoNetworks refuses a vif on a manager built without a network side.
var errNoNetworks = api.Errorf(api.ErrUnavailable, "this daemon has no network side: domains with vifs cannot run here")

// bridge resolves a vif's bridge= (see Networks.Bridge).
func (m *Manager) bridge(name string) string {
	if m.o.Networks == nil {
		return name
	}
	return m.o.Networks.Bridge(name)
}

// checkVif says whether vif v of a domain of tenant can be attached: the
// tenant may use its bridge (checked first: a tenant learns nothing of a
// bridge it may not use), which exists (a vif without bridge= is on
// xenbr0 by now, as in xl).
func (m *Manager) checkVif(tenant string, v api.Vif) error {
	if m.o.Tenancy != nil && v.Bridge != "" {
		if err := m.o.Tenancy.CheckNetwork(tenant, v.Bridge); err != nil {
			return err
		}
	}
	if m.o.Networks == nil {
		return errNoNetworks
	}
	return m.o.Networks.CheckVif(v)
}

// plugTap attaches vif's tap (see Networks.Attach).
func (m *Manager) plugTap(ctx context.Context, domain, tap string, v api.Vif) error {
	if m.o.Networks == nil {
		return errNoNetworks
	}
	return m.o.Networks.Attach(ctx, domain, tap, v)
}

// unplugTap removes a tap plugTap made.
func (m *Manager) unplugTap(tap string) {
	if m.o.Networks == nil {
		return
	}
	if err := m.o.Networks.Detach(tap); err != nil {
		m.o.Log.Error("removing tap", "tap", tap, "err", err)
	}
}

// bulkCounters is the optional form of Networks.Counters that reads every
// tap at once: a sample asks once (one netlink dump), not once per tap.
type bulkCounters interface {
	AllCounters() map[string][4]int64 // rx bytes, tx bytes, rx packets, tx packets
}

// allTapCounters are every tap's counters, when the network side reads
// them at once (nil: ask per tap).
func (m *Manager) allTapCounters() map[string][4]int64 {
	if b, ok := m.o.Networks.(bulkCounters); ok {
		return b.AllCounters()
	}
	return nil
}

// tapCounters are a tap's host-side bytes received and sent.
func (m *Manager) tapCounters(tap string) (rxBytes, txBytes, rxPackets, txPackets int64) {
	if m.o.Networks == nil {
		return 0, 0, 0, 0
	}
	return m.o.Networks.Counters(tap)
}
