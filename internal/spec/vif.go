package spec

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
)

// ParseVif parses one xl-network-configuration(5) spec, split as xl
// does (empty items skipped, blanks before an item too), and says what it
// accepts but cannot honour (notes).
func ParseVif(s string) (api.Vif, []Note, error) {
	var vif api.Vif
	var notes []Note
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimLeft(f, " \t\n")
		if f == "" {
			continue // '' is a vif with all defaults; a,,b is a,b
		}
		k, val, ok := strings.Cut(f, "=")
		if !ok {
			if f == "trusted" || f == "untrusted" {
				continue // advice to a Xen guest about its backend: here it is always the host
			}
			return vif, notes, fmt.Errorf("%q is not key=value", f)
		}
		note, err := vifKey(&vif, k, val)
		if err != nil {
			return vif, notes, err
		}
		if note != "" {
			notes = append(notes, Note{Msg: note})
		}
	}
	return vif, notes, nil
}

// vifKey applies one key=value item of a vif spec; it returns a note
// for a setting that has no effect here.
func vifKey(vif *api.Vif, k, val string) (string, error) {
	switch k {
	case "mac":
		if err := validMAC(val); err != nil {
			return "", err
		}
		vif.MAC = strings.ToLower(val)
	case "bridge":
		if !ifNameRE.MatchString(val) {
			return "", fmt.Errorf("bridge %q is not a valid interface name", val)
		}
		vif.Bridge = val
	case "ip":
		return "", vifIPs(vif, val)
	case "model":
		vif.Model = val
	case "rate":
		b, us, err := ParseRate(val)
		if err != nil {
			return "", err
		}
		vif.Rate, vif.RateBytes, vif.RateIntervalUS = val, b, us
	case "vifname":
		if !ifNameRE.MatchString(val) {
			return "", fmt.Errorf("vifname %q is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)", val)
		}
		vif.VifName = val
	case "type":
		if val != "ioemu" && val != "vif" {
			return "", fmt.Errorf("type %q: use ioemu or vif", val)
		}
		vif.Type = val
	case "mtu":
		n, _, err := ParseInt(val)
		if err != nil || n < int64(MTURange.Lo) || n > int64(MTURange.Hi) {
			return "", fmt.Errorf("mtu=%s: the tap's MTU in bytes, %d..%d", val, MTURange.Lo, MTURange.Hi)
		}
		vif.MTU = int(n)
	case "vlan":
		return "", fmt.Errorf("vlan=%s: Ringfence does not tag a vif's traffic; put the guest on a bridge for that VLAN instead: ip link add link UPLINK name UPLINK.%s type vlan id %s; ringfence network create br%s --uplink UPLINK.%s; then bridge=br%s", val, val, val, val, val, val)
	default:
		return vifXenKey(k, val)
	}
	return "", nil
}

// vifXenKey takes the keys that only steer Xen's hotplug scripts and
// backends: accepted, with a note when they would have changed something.
func vifXenKey(k, val string) (string, error) {
	switch k {
	case "script":
		if path.Base(val) == "vif-bridge" {
			return "", nil // what Ringfence does: the tap is a port of the bridge
		}
		return fmt.Sprintf("script=%s is not run: Ringfence makes the tap a port of the (Linux) bridge itself, as vif-bridge does", val), nil
	case "backend":
		return fmt.Sprintf("backend=%s (a Xen driver domain) is not used: the host serves this vif itself", val), nil
	case "gatewaydev", "forwarddev", "netdev":
		return fmt.Sprintf("%s=%s is for Xen's vif-route/vif-nat scripts, which are not run: the tap is a port of its bridge", k, val), nil
	case "accel", "devid", "colo_forward", "coloft_forward":
		return "", nil // no effect in xl either (accel), or Xen's device number
	}
	return "", fmt.Errorf("unknown key %q (keys: mac, bridge, ip, model, rate, vifname, type, mtu, script)", k)
}

// vifIPs reads ip=: addresses separated by blanks.
func vifIPs(vif *api.Vif, val string) error {
	for _, ip := range strings.Fields(val) {
		a, err := netip.ParseAddr(ip)
		if err != nil || a.Zone() != "" {
			return fmt.Errorf("ip %q is not an IPv4 or IPv6 address (several go space-separated: ip=10.0.0.5 2001:db8::5)", ip)
		}
		vif.IP = append(vif.IP, a.String())
	}
	return nil
}

// ParseInt reads a number as xl does (C's strtol, base 0, the whole
// text): decimal, 0x hex, a leading 0 octal, an optional sign. octal says
// the leading 0 made it octal. A domain file's numbers, quoted or not,
// are read with it.
func ParseInt(s string) (n int64, octal bool, err error) {
	digits := strings.TrimLeft(s, "+-")
	if len(s)-len(digits) > 1 || digits == "" {
		return 0, false, fmt.Errorf("%q is not a whole number", s)
	}
	base := 10
	switch {
	case len(digits) > 2 && (digits[:2] == "0x" || digits[:2] == "0X"):
		base, digits = 16, digits[2:]
	case len(digits) > 1 && digits[0] == '0':
		base, octal = 8, true
	}
	if strings.ContainsAny(digits, "_+-") {
		return 0, false, fmt.Errorf("%q is not a whole number", s)
	}
	n, err = strconv.ParseInt(digits, base, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%q is not a whole number", s)
	}
	if s[0] == '-' {
		n = -n
	}
	return n, octal, nil
}

// ParseSize reads 50m, 1g, 10G, 2T, 4096 (bytes; k/m/g/t are powers of
// 1024, either case), as xl and qemu-img write sizes.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	switch strings.ToLower(s[len(s)-min(1, len(s)):]) {
	case "k":
		mult = 1 << 10
	case "m":
		mult = 1 << 20
	case "g":
		mult = 1 << 30
	case "t":
		mult = 1 << 40
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size")
	}
	return n * mult, nil
}

var rateRE = regexp.MustCompile(`^([0-9]+)(GB|MB|KB|B|Gb|Mb|Kb|b)/s(@([0-9]+)(s|ms|us))?$`)

// ParseRate reads xl's rate= (NUM{GB,MB,KB,B,Gb,Mb,Kb,b}/s[@INTERVAL{s,ms,us}])
// into bytes per interval, the interval defaulting to 50 ms as in Xen.
func ParseRate(s string) (int64, int64, error) {
	m := rateRE.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, fmt.Errorf("rate %q: write a number, a unit (GB MB KB B for bytes, Gb Mb Kb b for bits) and /s, optionally @interval: 10Mb/s, 1MB/s@20ms", s)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	unit := map[string]int64{"GB": 1e9, "MB": 1e6, "KB": 1e3, "B": 1, "Gb": 1e9 / 8, "Mb": 1e6 / 8, "Kb": 1e3 / 8}[m[2]]
	perSec := n * unit
	if m[2] == "b" {
		perSec = n / 8
	}
	intervalUS := int64(50000)
	if m[4] != "" {
		iv, _ := strconv.ParseInt(m[4], 10, 64)
		intervalUS = iv * map[string]int64{"s": 1e6, "ms": 1e3, "us": 1}[m[5]]
	}
	if perSec <= 0 || intervalUS <= 0 || intervalUS > 1e6 {
		return 0, 0, fmt.Errorf("rate %q: the rate must be positive and the interval at most 1s", s)
	}
	return perSec * intervalUS / 1e6, intervalUS, nil
}
