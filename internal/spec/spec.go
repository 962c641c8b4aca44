// Package spec holds the rules of a valid api.DomainSpec and the
// mini-languages (disk, vif, size, rate) that xl.cfg files and runtime
// verbs share.
//
// internal/config turns a domain file into a spec and then calls
// Normalize, as the daemon does for a spec from the JSON API, a restore
// or a migrating peer: one set of rules, whatever the spec came from.
package spec

import (
	"fmt"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
)

// Problem is an error about particular settings of a spec, named by
// their xl.cfg keys, so a domain file's reader can point at the line that
// set the later of them (and a JSON client sees the same message).
type Problem struct {
	Keys []string // xl.cfg keys involved, e.g. maxmem and memory
	Item int      // for disk and vif: which one (-1: the key as a whole)
	Err  error
}

func (p *Problem) Error() string { return p.Err.Error() }
func (p *Problem) Unwrap() error { return p.Err }

// problem is a Problem about keys as a whole.
func problem(err error, keys ...string) error { return &Problem{Keys: keys, Item: -1, Err: err} }

// itemProblem is a Problem about the i-th disk or vif.
func itemProblem(key string, i int, err error) error {
	return &Problem{Keys: []string{key}, Item: i, Err: err}
}

// Normalize applies xl's defaults and checks every field and cross-field
// rule. The daemon runs it on every spec it receives, whether from a
// file, the JSON API, a restore or a migrating peer: none may carry what
// the file parser would refuse.
func Normalize(s *api.DomainSpec) error {
	if err := ValidName(s.Name); err != nil {
		return problem(fmt.Errorf("name: %w", err), "name")
	}
	if err := checkFields(s); err != nil {
		return err
	}
	if err := checkVNC(s); err != nil {
		return err
	}
	// The steps run in this order so a spec with several faults reports
	// the same one first as it always has.
	defaultType(s)
	if err := normalizeResources(s); err != nil {
		return err
	}
	defaultActions(s)
	if err := checkBoot(s); err != nil {
		return err
	}
	if err := normalizeDisks(s); err != nil {
		return err
	}
	return normalizeVifs(s)
}

// defaultType is xl's: pv when there is a kernel or bootloader to run,
// else hvm (firmware boots the first disk).
func defaultType(s *api.DomainSpec) {
	if s.Type == "" {
		s.Type = "pv"
		// A domain made from an image boots the image's kernel (the
		// daemon fills it in) or, with a bootloader, its GRUB.
		if s.Kernel == "" && s.Bootloader == "" && s.Provision == nil {
			s.Type = "hvm"
		}
	}
}

// normalizeResources fills memory and vCPUs the way xl does (each of a
// pair defaults to the other) and refuses a maximum below the boot value.
func normalizeResources(s *api.DomainSpec) error {
	if s.MemoryMiB == 0 {
		s.MemoryMiB = s.MaxMemMiB
	}
	if s.MemoryMiB == 0 {
		s.MemoryMiB = 32 // libxl's default
	}
	if fillMax(&s.MaxMemMiB, s.MemoryMiB) {
		return problem(fmt.Errorf("maxmem (%d) is below memory (%d): raise maxmem or lower memory", s.MaxMemMiB, s.MemoryMiB), "maxmem", "memory")
	}
	if s.VCPUs == 0 {
		s.VCPUs = 1
	}
	if fillMax(&s.MaxVCPUs, s.VCPUs) {
		return problem(fmt.Errorf("maxvcpus (%d) is below vcpus (%d): raise maxvcpus or lower vcpus", s.MaxVCPUs, s.VCPUs), "maxvcpus", "vcpus")
	}
	if s.CPUWeight == 0 {
		s.CPUWeight = 256
	}
	return nil
}

// fillMax sets an unset maximum (maxmem, maxvcpus) to the boot value and
// reports whether the maximum is below it.
func fillMax(limit *int, boot int) bool {
	if *limit == 0 {
		*limit = boot
	}
	return *limit < boot
}

// defaultActions fills the on_* actions left out; checkFields has
// already refused unknown ones.
func defaultActions(s *api.DomainSpec) {
	if s.OnPoweroff == "" {
		s.OnPoweroff = api.ActionDestroy
	}
	if s.OnReboot == "" {
		s.OnReboot = api.ActionRestart
	}
	if s.OnCrash == "" {
		s.OnCrash = api.ActionDestroy
	}
	if s.OnWatchdog == "" {
		s.OnWatchdog = api.ActionDestroy
	}
}

// checkBoot refuses a spec with nothing to boot and checks the boot
// files and the command line.
func checkBoot(s *api.DomainSpec) error {
	if s.Provision != nil && s.Kernel == "" {
		return nil // the daemon adds the image's disk and boot files
	}
	if s.Type != "hvm" && s.Kernel == "" && s.Bootloader == "" {
		return problem(fmt.Errorf("type %q needs kernel = \"/path/to/vmlinuz\" or bootloader = \"pygrub\" (or use type = \"hvm\" to boot the first disk)", s.Type), "type", "builder")
	}
	if s.Kernel == "" && len(s.Disks) == 0 {
		return problem(fmt.Errorf("nothing to boot: set kernel = ... or give a disk"), "kernel", "disk")
	}
	for _, p := range []string{s.Kernel, s.Ramdisk} {
		if p != "" {
			if err := AbsPath(p); err != nil {
				return problem(err, "kernel", "ramdisk")
			}
		}
	}
	if err := SafeText(s.Cmdline); err != nil {
		return problem(fmt.Errorf("cmdline: %w", err), "cmdline", "extra", "root")
	}
	// x86's COMMAND_LINE_SIZE is 2048 bytes with its NUL; Ringfence may
	// append " console=ttyS0" (14 bytes). Longer, the guest cuts it off
	// silently, console= with it.
	if n := len(s.Cmdline); n > MaxCmdline {
		return problem(fmt.Errorf("cmdline: %d bytes, over the %d an x86 kernel keeps (2047, less room for the console= Ringfence adds): the guest would cut it off silently; shorten root=/extra=/cmdline", n, MaxCmdline), "cmdline", "extra", "root")
	}
	return nil
}

// normalizeDisks fills each disk's format, access and guest name.
func normalizeDisks(s *api.DomainSpec) error {
	for i := range s.Disks {
		dk := &s.Disks[i]
		if err := AbsPath(dk.Target); err != nil && !(dk.CDROM && dk.Target == "") {
			return itemProblem("disk", i, fmt.Errorf("disk %d: %w", i, err))
		}
		if dk.Format == "" {
			dk.Format = "raw"
		}
		if dk.Access == "" {
			dk.Access = "rw"
		}
		if err := OneOf("raw", "qcow2", "qcow", "vhd", "qed")(dk.Format); err != nil {
			return itemProblem("disk", i, fmt.Errorf("disk %d format: %w", i, err))
		}
		if err := OneOf("rw", "ro")(dk.Access); err != nil {
			return itemProblem("disk", i, fmt.Errorf("disk %d access: %w", i, err))
		}
		dk.Guest = GuestDisk(i)
	}
	if len(s.Disks) > 20 {
		return itemProblem("disk", 20, fmt.Errorf("%d disks: at most 20", len(s.Disks)))
	}
	return nil
}

// VifDefaults fills what a vif spec may leave out: the model (virtio)
// and the bridge (xenbr0, as in xl).
func VifDefaults(v *api.Vif) {
	if v.Model == "" {
		v.Model = "virtio"
	}
	if v.Bridge == "" {
		v.Bridge = api.DefaultBridge
	}
}

// normalizeVifs gives each vif a MAC (a stable generated one if none),
// unique within the domain, and a model.
func normalizeVifs(s *api.DomainSpec) error {
	macs := map[string]int{}
	for i := range s.Vifs {
		v := &s.Vifs[i]
		if v.MAC == "" {
			v.MAC = GenerateMAC(s.Name, i)
		}
		if err := validMAC(v.MAC); err != nil {
			return itemProblem("vif", i, fmt.Errorf("vif %d: %w", i, err))
		}
		v.MAC = strings.ToLower(v.MAC)
		if j, dup := macs[v.MAC]; dup {
			return itemProblem("vif", i, fmt.Errorf("vif %d: mac %s is vif %d's too: two NICs with one MAC confuse the bridge and the guest; drop mac= from one (a stable one is generated)", i, v.MAC, j))
		}
		macs[v.MAC] = i
		VifDefaults(v)
		if err := OneOf("virtio", "e1000", "rtl8139")(v.Model); err != nil {
			return itemProblem("vif", i, fmt.Errorf("vif %d model: %w", i, err))
		}
		if v.Bridge != "" && !ifNameRE.MatchString(v.Bridge) {
			return itemProblem("vif", i, fmt.Errorf("vif %d: bridge %q is not a valid interface name", i, v.Bridge))
		}
	}
	return nil
}
