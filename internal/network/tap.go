// Package network prepares the host side of a domain's NICs: taps named
// like Xen's backends (vif<domid>.<n>) attached to a bridge. It knows
// nothing of QEMU; the engine receives the tap name.
package network

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"os"
)

// CheckBridge verifies that a bridge exists and is a bridge.
func CheckBridge(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return fmt.Errorf("bridge %q does not exist and no network has that name: create one (ringfence network create %s [--uplink IF | --nat --subnet CIDR]) or fix bridge= in the vif", name, name)
		}
		return fmt.Errorf("looking up bridge %q: %w", name, err)
	}
	if l.Type() != "bridge" {
		return fmt.Errorf("%q is a %s interface, not a bridge: fix bridge= in the vif", name, l.Type())
	}
	return nil
}

// CreateTap makes a persistent tap, enslaves it to bridge (if any) with the
// bridge's MTU, and brings it up. The tap outlives QEMU (persistent), so
// the daemon, not QEMU, owns its lifetime.
func CreateTap(name, bridge string) error {
	if _, err := netlink.LinkByName(name); err == nil {
		return fmt.Errorf("tap %q already exists: a stale interface from a crashed run? remove it with `ip link del %s`", name, name)
	}
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: name},
		Mode:      netlink.TUNTAP_MODE_TAP,
		Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_ONE_QUEUE,
		Queues:    0,
	}
	if err := netlink.LinkAdd(tap); err != nil {
		return fmt.Errorf("creating tap %s: %w", name, err)
	}
	// netlink opened queue fds to create it; persistence is what we want.
	for _, f := range tap.Fds {
		f.Close()
	}
	ok := false
	defer func() {
		if !ok {
			DeleteTap(name)
		}
	}()
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding new tap %s: %w", name, err)
	}
	if bridge != "" {
		br, err := netlink.LinkByName(bridge)
		if err != nil {
			return CheckBridge(bridge)
		}
		if err := netlink.LinkSetMTU(link, br.Attrs().MTU); err != nil {
			return fmt.Errorf("setting MTU of %s: %w", name, err)
		}
		if err := netlink.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("attaching %s to bridge %s: %w", name, bridge, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing up %s: %w", name, err)
	}
	ok = true
	return nil
}

// SetMTU sets an interface's MTU (a vif's mtu=, after CreateTap gave it
// its bridge's).
func SetMTU(name string, mtu int) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding %s: %w", name, err)
	}
	if err := netlink.LinkSetMTU(l, mtu); err != nil {
		return fmt.Errorf("setting the MTU of %s to %d: %w", name, mtu, err)
	}
	return nil
}

// DeleteTap removes a tap and its rate-limiting IFB, if any; a missing tap
// is not an error.
func DeleteTap(name string) error {
	if l, err := netlink.LinkByName(ifbName(name)); err == nil {
		netlink.LinkDel(l)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("removing tap %s: %w", name, err)
	}
	return nil
}

// Exists reports whether an interface exists.
func Exists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// TapCounters returns a tap's received and transmitted bytes (received by
// the host = sent by the guest).
func TapCounters(name string) TapStats {
	l, err := netlink.LinkByName(name)
	if err != nil || l.Attrs().Statistics == nil {
		return TapStats{}
	}
	st := l.Attrs().Statistics
	return TapStats{RxBytes: int64(st.RxBytes), TxBytes: int64(st.TxBytes), RxPackets: int64(st.RxPackets), TxPackets: int64(st.TxPackets)}
}

// AllTapCounters are every link's counters by name, from one netlink
// dump: a sample of many domains asks once, not once per tap.
func AllTapCounters() map[string]TapStats {
	links, err := netlink.LinkList()
	if err != nil {
		return nil
	}
	out := make(map[string]TapStats, len(links))
	for _, l := range links {
		if st := l.Attrs().Statistics; st != nil {
			out[l.Attrs().Name] = TapStats{RxBytes: int64(st.RxBytes), TxBytes: int64(st.TxBytes), RxPackets: int64(st.RxPackets), TxPackets: int64(st.TxPackets)}
		}
	}
	return out
}

// TapStats are a tap's counters as the host sees them (what the host
// receives from the tap, the guest sent).
type TapStats struct {
	RxBytes, TxBytes, RxPackets, TxPackets int64
}

// OpenTap opens a queue of an existing persistent tap (as root), to hand
// to an unprivileged QEMU.
func OpenTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR | unix.IFF_ONE_QUEUE)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attaching to tap %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "tap:"+name), nil
}
