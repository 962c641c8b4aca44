package spec

import (
	"fmt"
	"net/netip"

	"github.com/ringfence/ringfence/internal/api"
)

// fieldRule is the outcome of checking one JSON field against the same
// rule as its xl.cfg key: the field's name and what is wrong, if anything.
type fieldRule struct {
	name string
	err  error
}

// rng says whether v is 0 (the default) or within r.
func rng(name string, v int64, r Range) fieldRule {
	if v != 0 && (v < r.Lo || v > r.Hi) {
		return fieldRule{name, fmt.Errorf("%d is out of range: use %d..%d (0 for the default)", v, r.Lo, r.Hi)}
	}
	return fieldRule{}
}

func strRule(name, v string, check func(string) error) fieldRule {
	if v == "" {
		return fieldRule{}
	}
	if err := check(v); err != nil {
		return fieldRule{name, err}
	}
	return fieldRule{}
}

// checkFields applies each key's rule to a spec that did not come from a
// domain file (the JSON API, a restore or migration header). Errors name
// the JSON field; the first in field order is reported.
func checkFields(s *api.DomainSpec) error {
	rules := []fieldRule{
		strRule("uuid", s.UUID, ValidUUID),
		strRule("type", s.Type, ValidType),
		rng("memory_mib", int64(s.MemoryMiB), MemoryRange),
		rng("maxmem_mib", int64(s.MaxMemMiB), MemoryRange),
		rng("vcpus", int64(s.VCPUs), VCPURange),
		rng("maxvcpus", int64(s.MaxVCPUs), VCPURange),
		rng("cpu_weight", int64(s.CPUWeight), CPUWeightRange),
		rng("cap", int64(s.Cap), CapRange),
		rng("hotplug_slots", int64(s.HotplugSlots), HotplugSlotsRange),
		rng("rtc_timeoffset", int64(s.RTCOffsetSec), RTCOffsetRange),
		strRule("accel", s.Accel, ValidAccel),
		strRule("on_poweroff", s.OnPoweroff, ValidAction),
		strRule("on_reboot", s.OnReboot, ValidAction),
		strRule("on_crash", s.OnCrash, ValidAction),
		strRule("on_watchdog", s.OnWatchdog, ValidAction),
		strRule("bootloader", s.Bootloader, ValidBootloader),
		strRule("boot", s.Boot, ValidBoot),
		strRule("transfer_action", s.TransferAction, ValidTransferAction),
	}
	if s.TransferQuota < 0 {
		rules = append(rules, fieldRule{"transfer_quota", fmt.Errorf("%d: a quota is a number of bytes >= 0 (0: none)", s.TransferQuota)})
	}
	// cpus= is checked against the host's CPUs by the daemon (ParseCPUList).
	for i, d := range s.Disks {
		rules = append(rules, diskFields(fmt.Sprintf("disks[%d].", i), d)...)
	}
	for i := range s.Vifs {
		rules = append(rules, vifFields(fmt.Sprintf("vifs[%d].", i), &s.Vifs[i])...)
	}
	for _, r := range rules {
		if r.err != nil {
			return fmt.Errorf("%s: %w", r.name, r.err)
		}
	}
	return nil
}

// diskFields are the rules of one disk's fields; p prefixes their names.
func diskFields(p string, d api.Disk) []fieldRule {
	rules := []fieldRule{
		strRule(p+"vdev", d.VDev, func(v string) error {
			if !vdevRE.MatchString(v) {
				return fmt.Errorf("%q is not a disk name like xvda, hdc or vdb", v)
			}
			return nil
		}),
		rng(p+"iops", int64(d.IOPS), Range{1, 1 << 40}),
		rng(p+"bps", d.BPS, Range{1, 1 << 50}),
		strRule(p+"port", d.Port, validPort),
	}
	if d.VDev == "" {
		rules = append(rules, fieldRule{p + "vdev", fmt.Errorf("is missing: every disk needs its name in the domain, like xvda")})
	}
	return rules
}

// vifFields are the rules of one vif's fields; p prefixes their names. A
// vif with rate alone (what a client writes) gets its meaning filled in.
func vifFields(p string, v *api.Vif) []fieldRule {
	if v.Rate != "" && v.RateBytes == 0 && v.RateIntervalUS == 0 {
		v.RateBytes, v.RateIntervalUS, _ = ParseRate(v.Rate)
	}
	rules := []fieldRule{
		strRule(p+"vifname", v.VifName, func(x string) error {
			if !ifNameRE.MatchString(x) {
				return fmt.Errorf("%q is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)", x)
			}
			return nil
		}),
		strRule(p+"type", v.Type, OneOf("ioemu", "vif")),
		strRule(p+"port", v.Port, validPort),
		rng(p+"rate_bytes", v.RateBytes, Range{1, 1 << 50}),
		rng(p+"rate_interval_us", v.RateIntervalUS, Range{1, 1 << 40}),
		rng(p+"mtu", int64(v.MTU), MTURange),
	}
	for _, ip := range v.IP {
		if a, err := netip.ParseAddr(ip); err != nil || a.Zone() != "" {
			rules = append(rules, fieldRule{p + "ip", fmt.Errorf("%q is not an IPv4 or IPv6 address", ip)})
		}
	}
	if v.Rate != "" {
		b, us, err := ParseRate(v.Rate)
		if err != nil {
			rules = append(rules, fieldRule{p + "rate", err})
		} else if b != v.RateBytes || us != v.RateIntervalUS {
			rules = append(rules, fieldRule{p + "rate", fmt.Errorf("%q does not match rate_bytes/rate_interval_us (%d/%d): send rate alone", v.Rate, v.RateBytes, v.RateIntervalUS)})
		}
	} else if v.RateBytes != 0 || v.RateIntervalUS != 0 {
		rules = append(rules, fieldRule{p + "rate", fmt.Errorf("rate_bytes/rate_interval_us need rate (xl's rate=, e.g. \"10Mb/s\")")})
	}
	return rules
}
