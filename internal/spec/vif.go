package spec

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
)

// ParseVif parses one xl-network-configuration(5) spec.
func ParseVif(s string) (api.Vif, error) {
	var vif api.Vif
	if strings.TrimSpace(s) == "" {
		return vif, nil // '' is a vif with all defaults
	}
	for _, f := range strings.Split(s, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok {
			return vif, fmt.Errorf("%q is not key=value", f)
		}
		switch k {
		case "mac":
			if err := validMAC(val); err != nil {
				return vif, err
			}
			vif.MAC = strings.ToLower(val)
		case "bridge":
			if !ifNameRE.MatchString(val) {
				return vif, fmt.Errorf("bridge %q is not a valid interface name", val)
			}
			vif.Bridge = val
		case "ip":
			for _, ip := range strings.Fields(val) {
				a, err := netip.ParseAddr(ip)
				if err != nil || a.Zone() != "" {
					return vif, fmt.Errorf("ip %q is not an IPv4 or IPv6 address (several go space-separated: ip=10.0.0.5 2001:db8::5)", ip)
				}
				vif.IP = append(vif.IP, a.String())
			}
		case "model":
			vif.Model = val
		case "rate":
			b, us, err := ParseRate(val)
			if err != nil {
				return vif, err
			}
			vif.Rate, vif.RateBytes, vif.RateIntervalUS = val, b, us
		case "vifname":
			if !ifNameRE.MatchString(val) {
				return vif, fmt.Errorf("vifname %q is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)", val)
			}
			vif.VifName = val
		case "type":
			if val != "ioemu" && val != "vif" {
				return vif, fmt.Errorf("type %q: use ioemu or vif", val)
			}
			vif.Type = val
		case "script", "backend", "gatewaydev", "netdev", "accel", "devid", "mtu", "trusted", "untrusted":
			// Xen hotplug details with no meaning here; accepted so Xen files load.
		default:
			return vif, fmt.Errorf("unknown key %q", k)
		}
	}
	return vif, nil
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
