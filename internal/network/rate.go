package network

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// SetRate enforces a vif's rate= on its tap, both ways, with the kernel's
// traffic control. What the guest receives leaves by the tap's egress and
// is shaped there by a token bucket; what the guest sends arrives on the
// tap's ingress, is redirected to a companion IFB device (ifbName) and
// shaped on its egress by the same bucket, since ingress cannot queue.
// bytesPerInterval per intervalUS is xl's rate (1MB/s@20ms -> 20000 per
// 20000 µs); the burst is one interval's worth.
func SetRate(tap string, bytesPerInterval, intervalUS int64) error {
	if bytesPerInterval <= 0 || intervalUS <= 0 {
		return nil
	}
	rate, buffer, limit := tbfParams(bytesPerInterval, intervalUS)
	link, err := netlink.LinkByName(tap)
	if err != nil {
		return fmt.Errorf("rate on %s: %w", tap, err)
	}
	if err := shape(link, rate, buffer, limit); err != nil {
		return err
	}
	ifb := &netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: ifbName(tap)}}
	// Set again (a transfer quota's throttle over rate=): the device is
	// there already and is reshaped.
	if err := netlink.LinkAdd(ifb); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("creating %s for %s's transmit limit: %w", ifb.Name, tap, err)
	}
	il, err := netlink.LinkByName(ifb.Name)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(il); err != nil {
		return err
	}
	if err := shape(il, rate, buffer, limit); err != nil {
		return err
	}
	idx := link.Attrs().Index
	ingress := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS}}
	if err := netlink.QdiscReplace(ingress); err != nil {
		return fmt.Errorf("ingress qdisc on %s: %w", tap, err)
	}
	redirect := netlink.NewMirredAction(il.Attrs().Index)
	filter := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: netlink.MakeHandle(0xffff, 0), Priority: 1, Protocol: unix.ETH_P_ALL},
		Sel:         &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Nkeys: 1, Keys: []netlink.TcU32Key{{}}},
		Actions:     []netlink.Action{redirect},
	}
	if err := netlink.FilterReplace(filter); err != nil {
		return fmt.Errorf("redirecting %s's transmit to %s: %w", tap, ifb.Name, err)
	}
	return nil
}

// tbfParams are the token bucket's settings for xl's rate: bytes per
// second, the bucket (one interval's worth, at least two full frames)
// and the queue (four buckets). The kernel takes the bucket as the time
// it takes to send it at the rate, in its scheduler ticks, not in bytes:
// given 31250 as bytes it held a 1250-byte bucket at 5 Mbit/s, and a
// frame larger than the bucket is always dropped, so no full-size frame
// ever passed a rate=.
func tbfParams(bytesPerInterval, intervalUS int64) (rate uint64, buffer, limit uint32) {
	rate = uint64(bytesPerInterval * 1000000 / intervalUS)
	burst := bytesPerInterval
	if burst < 3200 {
		burst = 3200 // at least two full frames, or nothing passes
	}
	return rate, netlink.Xmittime(rate, uint32(burst)), uint32(burst * 4)
}

func shape(link netlink.Link, rate uint64, buffer, limit uint32) error {
	tbf := &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		Rate:       rate,
		Buffer:     buffer,
		Limit:      limit,
	}
	if err := netlink.QdiscReplace(tbf); err != nil {
		return fmt.Errorf("shaping %s to %d B/s: %w", link.Attrs().Name, rate, err)
	}
	return nil
}

// ifbName is the companion device shaping a tap's transmit: vif3.0 -> ifb3.0.
func ifbName(tap string) string { return "ifb" + strings.TrimPrefix(tap, "vif") }

// Rate reports the egress shaping rate of a tap in bytes per second (0 when
// unshaped), for checks and `network-list`.
func Rate(tap string) uint64 {
	link, err := netlink.LinkByName(tap)
	if err != nil {
		return 0
	}
	qs, err := netlink.QdiscList(link)
	if err != nil {
		return 0
	}
	for _, q := range qs {
		if t, ok := q.(*netlink.Tbf); ok {
			return t.Rate
		}
	}
	return 0
}
