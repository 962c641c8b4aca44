package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var ifnameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)

// CheckIfName validates an interface name (the kernel's 15 bytes, and
// nothing a shell or tc would read as syntax).
func CheckIfName(what, name string) error {
	if !ifnameRE.MatchString(name) {
		return fmt.Errorf("%s %q: want 1-15 letters, digits, '_', '.' or '-'", what, name)
	}
	return nil
}

// CreateBridge makes a bridge and brings it up. It returns false when the
// bridge already existed (then it is left as it is).
func CreateBridge(name string) (bool, error) {
	if l, err := netlink.LinkByName(name); err == nil {
		if l.Type() != "bridge" {
			return false, fmt.Errorf("%q exists and is a %s interface, not a bridge", name, l.Type())
		}
		return false, nil
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		return false, fmt.Errorf("creating bridge %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		netlink.LinkDel(br)
		return false, fmt.Errorf("bringing bridge %s up: %w", name, err)
	}
	return true, nil
}

// Enslave puts uplink on bridge, refusing an uplink that already has a
// master (it would be taken from whatever uses it).
func Enslave(uplink, bridge string) error {
	l, err := netlink.LinkByName(uplink)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return fmt.Errorf("uplink %q does not exist (see `ip link`)", uplink)
		}
		return err
	}
	if l.Attrs().MasterIndex != 0 {
		m, _ := netlink.LinkByIndex(l.Attrs().MasterIndex)
		name := "another device"
		if m != nil {
			name = m.Attrs().Name
		}
		if name == bridge {
			return nil
		}
		return fmt.Errorf("uplink %s is already part of %s; free it first", uplink, name)
	}
	if l.Type() == "bridge" {
		return fmt.Errorf("uplink %s is itself a bridge; name it with --bridge instead", uplink)
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("adding %s to %s: %w", uplink, bridge, err)
	}
	return netlink.LinkSetUp(l)
}

// Release takes uplink off its bridge (missing is fine).
func Release(uplink string) {
	if l, err := netlink.LinkByName(uplink); err == nil {
		netlink.LinkSetNoMaster(l)
	}
}

// DeleteLink removes an interface (missing is fine).
func DeleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	return netlink.LinkDel(l)
}

// Ports lists the interfaces on a bridge.
func Ports(bridge string) []string {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil
	}
	links, _ := netlink.LinkList()
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// AddAddr gives link the address (a NAT network's gateway); already
// having it is fine.
func AddAddr(name string, p netip.Prefix) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if err := netlink.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("adding %s to %s: %w", p, name, err)
	}
	return nil
}

// DelAddr removes an address AddAddr gave (missing is fine).
func DelAddr(name string, p netip.Prefix) {
	if l, err := netlink.LinkByName(name); err == nil {
		netlink.AddrDel(l, &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}})
	}
}

// Overlapping names what on this host already uses addresses in p: an
// interface address or a route (the default route aside), or "".
func Overlapping(p netip.Prefix) string {
	addrs, _ := netlink.AddrList(nil, netlink.FAMILY_V4)
	for _, a := range addrs {
		if ap, ok := netipPrefix(a.IPNet); ok && ap.Overlaps(p) {
			name := "an interface"
			if l, err := netlink.LinkByIndex(a.LinkIndex); err == nil {
				name = l.Attrs().Name
			}
			return fmt.Sprintf("address %s on %s", ap, name)
		}
	}
	routes, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if rp, ok := netipPrefix(r.Dst); ok && rp.Bits() > 0 && rp.Overlaps(p) {
			return fmt.Sprintf("route %s", rp.Masked())
		}
	}
	return ""
}

func netipPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// EnableForwarding turns on IPv4 forwarding in this network namespace, as
// NAT needs (libvirt does the same; it is not turned off again, since
// other things on the host may rely on it by then).
func EnableForwarding() error {
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enabling IPv4 forwarding for NAT: %w", err)
	}
	return nil
}
