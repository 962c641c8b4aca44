package spec

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/names"
)

// The field rules below are exported because a domain file's keys
// (internal/config) and a spec's JSON fields (Normalize) must agree: each
// rule is written once, here.

// Range is the span a numeric setting accepts. In a spec 0 also means
// "the default" (see checkFields).
type Range struct{ Lo, Hi int64 }

// The ranges of the numeric settings, named after their xl.cfg keys.
var (
	MemoryRange       = Range{16, 1 << 22}         // memory, maxmem (MiB)
	VCPURange         = Range{1, 255}              // vcpus, maxvcpus
	CPUWeightRange    = Range{1, 65535}            // cpu_weight
	CapRange          = Range{0, 25500}            // cap (percent of one host CPU)
	HotplugSlotsRange = Range{0, 8}                // hotplug_slots
	RTCOffsetRange    = Range{-1 << 31, 1<<31 - 1} // rtc_timeoffset (seconds)
	MTURange          = Range{68, 65535}           // a vif's mtu= (bytes; 68 is IPv4's minimum)
)

var portRE = regexp.MustCompile(`^hp[0-7]$`)

// validPort is a hot-plug slot name (engine.PortName: hp0..hp7).
func validPort(s string) error {
	if !portRE.MatchString(s) {
		return fmt.Errorf("%q is not a hot-plug slot (hp0..hp7)", s)
	}
	return nil
}

// MaxCmdline is the longest kernel command line accepted.
const MaxCmdline = 2047 - len(" console=ttyS0")

// GuestDisk is the virtio name of the i-th disk: disks map to vda, vdb...
// in the order the domain file lists them.
func GuestDisk(i int) string { return "vd" + string(rune('a'+i)) }

// GenerateMAC derives a stable MAC in Xen's OUI 00:16:3e from the domain
// name and vif index, so a domain keeps its MAC across restarts and hosts.
func GenerateMAC(name string, idx int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", name, idx)))
	return fmt.Sprintf("00:16:3e:%02x:%02x:%02x", h[0]&0x7f, h[1], h[2])
}

var (
	uuidRE   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	macRE    = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)
	ifNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
)

// ValidName is the domain name rule (internal/names).
func ValidName(s string) error { return names.Check("domain", s) }

// ValidUUID checks uuid=.
func ValidUUID(s string) error {
	if !uuidRE.MatchString(s) {
		return fmt.Errorf("%q is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", s)
	}
	return nil
}

func validMAC(s string) error {
	if !macRE.MatchString(s) {
		return fmt.Errorf("mac %q is malformed: write six hex pairs like 00:16:3e:12:34:56 (or leave mac= out to get a stable generated one)", s)
	}
	var first int
	fmt.Sscanf(s[:2], "%x", &first)
	if first&1 == 1 {
		return fmt.Errorf("mac %q is a multicast address: the first byte must be even", s)
	}
	return nil
}

// AbsPath checks a host path (kernel=, ramdisk=, a disk's target).
func AbsPath(s string) error {
	if !strings.HasPrefix(s, "/") {
		return fmt.Errorf("path %q must be absolute", s)
	}
	if strings.ContainsAny(s, "\x00\n") {
		return fmt.Errorf("path %q contains a control character", s)
	}
	return nil
}

// SafeText checks text that ends up on the kernel command line.
func SafeText(s string) error {
	for _, r := range s {
		if r < 0x20 && r != '\t' {
			return fmt.Errorf("contains a control character")
		}
	}
	return nil
}

// ValidAction checks on_poweroff=, on_reboot=, on_crash=, on_watchdog=.
func ValidAction(s string) error {
	return OneOf(api.ActionDestroy, api.ActionRestart, api.ActionPreserve, api.ActionRenameRestart,
		api.ActionCoredumpDestroy, api.ActionCoredumpRestart, api.ActionSoftReset)(s)
}

// ValidType checks type=.
var ValidType = OneOf("pv", "pvh", "hvm")

// ValidAccel checks accel=.
var ValidAccel = OneOf("kvm", "tcg")

// ValidBootloader checks bootloader=.
func ValidBootloader(s string) error {
	if filepath.Base(s) != "pygrub" && s != "pvgrub" {
		return fmt.Errorf("%q: only pygrub is understood (the firmware then boots the disk's own bootloader); or set kernel= for direct boot", s)
	}
	return nil
}

var bootRE = regexp.MustCompile(`^[acdn]{1,4}$`)

// ValidBoot checks boot=.
func ValidBoot(s string) error {
	if !bootRE.MatchString(s) {
		return fmt.Errorf("%q: the boot order is letters c (disk), d (cdrom), n (network), e.g. \"cd\"", s)
	}
	return nil
}

// OneOf is a rule that accepts exactly the allowed words.
func OneOf(allowed ...string) func(string) error {
	return func(s string) error {
		for _, a := range allowed {
			if s == a {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", s, strings.Join(allowed, ", "))
	}
}
