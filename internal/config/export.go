package config

import (
	"fmt"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
)

// quote writes an xl.cfg single-quoted string.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`, "\t", `\t`)
	return "'" + r.Replace(s) + "'"
}

// Format writes a spec back as an xl.cfg file. Decode(Format(s)) gives s
// again for every normalized spec (the fuzz test checks it).
func Format(s api.DomainSpec) string {
	var b strings.Builder
	kv := func(k, v string) { fmt.Fprintf(&b, "%s = %s\n", k, v) }
	kv("name", quote(s.Name))
	if s.UUID != "" {
		kv("uuid", quote(s.UUID))
	}
	kv("type", quote(s.Type))
	if s.Persistent {
		kv("persistent", "1")
	}
	kv("memory", fmt.Sprint(s.MemoryMiB))
	kv("maxmem", fmt.Sprint(s.MaxMemMiB))
	kv("vcpus", fmt.Sprint(s.VCPUs))
	kv("maxvcpus", fmt.Sprint(s.MaxVCPUs))
	if s.Kernel != "" {
		kv("kernel", quote(s.Kernel))
	}
	if s.Ramdisk != "" {
		kv("ramdisk", quote(s.Ramdisk))
	}
	if s.Cmdline != "" {
		kv("cmdline", quote(s.Cmdline))
	}
	if len(s.Disks) > 0 {
		b.WriteString("disk = [\n")
		for _, d := range s.Disks {
			spec := fmt.Sprintf("format=%s,vdev=%s,access=%s", d.Format, d.VDev, d.Access)
			if d.CDROM {
				spec += ",devtype=cdrom"
			}
			if d.IOPS > 0 {
				spec += fmt.Sprintf(",iops=%d", d.IOPS)
			}
			if d.BPS > 0 {
				spec += fmt.Sprintf(",bps=%d", d.BPS)
			}
			if d.Target != "" {
				spec += ",target=" + d.Target // last: it may hold commas
			}
			fmt.Fprintf(&b, "    %s,\n", quote(spec))
		}
		b.WriteString("]\n")
	}
	if len(s.Vifs) > 0 {
		b.WriteString("vif = [\n")
		for _, v := range s.Vifs {
			parts := []string{"mac=" + v.MAC}
			if v.Bridge != "" {
				parts = append(parts, "bridge="+v.Bridge)
			}
			if len(v.IP) > 0 {
				parts = append(parts, "ip="+strings.Join(v.IP, " "))
			}
			if v.Model != "" {
				parts = append(parts, "model="+v.Model)
			}
			if v.Rate != "" {
				parts = append(parts, "rate="+v.Rate)
			}
			if v.VifName != "" {
				parts = append(parts, "vifname="+v.VifName)
			}
			if v.Type != "" {
				parts = append(parts, "type="+v.Type)
			}
			fmt.Fprintf(&b, "    %s,\n", quote(strings.Join(parts, ",")))
		}
		b.WriteString("]\n")
	}
	kv("on_poweroff", quote(s.OnPoweroff))
	kv("on_reboot", quote(s.OnReboot))
	kv("on_crash", quote(s.OnCrash))
	kv("on_watchdog", quote(s.OnWatchdog))
	if s.Accel != "" {
		kv("accel", quote(s.Accel))
	}
	if s.CPUs != "" {
		if strings.Contains(s.CPUs, ";") {
			var items []string
			for _, c := range strings.Split(s.CPUs, ";") {
				items = append(items, quote(c))
			}
			kv("cpus", "[ "+strings.Join(items, ", ")+" ]")
		} else {
			kv("cpus", quote(s.CPUs))
		}
	}
	kv("cpu_weight", fmt.Sprint(s.CPUWeight))
	kv("cap", fmt.Sprint(s.Cap))
	if s.HotplugSlots > 0 {
		kv("hotplug_slots", fmt.Sprint(s.HotplugSlots))
	}
	if s.Bootloader != "" {
		kv("bootloader", quote(s.Bootloader))
	}
	if s.Boot != "" {
		kv("boot", quote(s.Boot))
	}
	if s.Localtime {
		kv("localtime", "1")
	}
	if s.RTCOffsetSec != 0 {
		kv("rtc_timeoffset", quote(fmt.Sprint(s.RTCOffsetSec)))
	}
	return b.String()
}

// Summary says in a few lines what a spec maps to on KVM.
func Summary(s api.DomainSpec) []string {
	boot := "direct kernel boot of " + s.Kernel
	if s.Kernel == "" {
		boot = "firmware boot from " + s.Disks[0].VDev
	}
	out := []string{fmt.Sprintf("domain %s: %s, %d MiB (max %d), %d vCPU(s) (max %d), %s",
		s.Name, s.Type, s.MemoryMiB, s.MaxMemMiB, s.VCPUs, s.MaxVCPUs, boot)}
	if s.Cmdline != "" {
		out = append(out, "  cmdline: "+s.Cmdline)
	}
	for _, d := range s.Disks {
		kind := "virtio-blk"
		if d.CDROM {
			kind = "IDE CD-ROM"
		}
		target := d.Target
		if target == "" {
			target = "(empty)"
		}
		out = append(out, fmt.Sprintf("  disk %s -> /dev/%s: %s %s, %s, %s", d.VDev, d.Guest, kind, target, d.Format, d.Access))
	}
	for i, v := range s.Vifs {
		where := "no bridge (unconnected tap)"
		if v.Bridge != "" {
			where = "tap on bridge " + v.Bridge
		}
		ip := ""
		if len(v.IP) > 0 {
			ip = ", ip " + strings.Join(v.IP, " ")
		}
		out = append(out, fmt.Sprintf("  vif %d -> %s NIC %s, %s%s", i, v.Model, v.MAC, where, ip))
	}
	out = append(out, fmt.Sprintf("  on_poweroff %s, on_reboot %s, on_crash %s", s.OnPoweroff, s.OnReboot, s.OnCrash))
	return out
}
