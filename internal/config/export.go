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
	var w cfgWriter
	formatMachine(&w, s)
	if len(s.Disks) > 0 {
		w.list("disk", diskSpecs(s.Disks))
	}
	if len(s.Vifs) > 0 {
		w.list("vif", vifSpecs(s.Vifs))
	}
	formatPolicy(&w, s)
	formatVNC(&w, s)
	formatProvision(&w, s)
	return w.String()
}

// cfgWriter writes xl.cfg lines.
type cfgWriter struct{ strings.Builder }

func (w *cfgWriter) kv(k, v string) { fmt.Fprintf(w, "%s = %s\n", k, v) }

// list writes a list of quoted specs, one per line.
func (w *cfgWriter) list(k string, items []string) {
	fmt.Fprintf(w, "%s = [\n", k)
	for _, it := range items {
		fmt.Fprintf(w, "    %s,\n", quote(it))
	}
	w.WriteString("]\n")
}

// formatMachine writes what the domain is: its identity, size and boot
// files.
func formatMachine(w *cfgWriter, s api.DomainSpec) {
	w.kv("name", quote(s.Name))
	if s.UUID != "" {
		w.kv("uuid", quote(s.UUID))
	}
	w.kv("type", quote(s.Type))
	if s.Persistent {
		w.kv("persistent", "1")
	}
	if s.HA {
		w.kv("ha", "1")
	}
	w.kv("memory", fmt.Sprint(s.MemoryMiB))
	w.kv("maxmem", fmt.Sprint(s.MaxMemMiB))
	w.kv("vcpus", fmt.Sprint(s.VCPUs))
	w.kv("maxvcpus", fmt.Sprint(s.MaxVCPUs))
	if s.Kernel != "" {
		w.kv("kernel", quote(s.Kernel))
	}
	if s.Ramdisk != "" {
		w.kv("ramdisk", quote(s.Ramdisk))
	}
	if s.Cmdline != "" {
		w.kv("cmdline", quote(s.Cmdline))
	}
}

// diskSpecs writes each disk in key=value form, which needs no
// positional guessing to read back.
func diskSpecs(disks []api.Disk) []string {
	var out []string
	for _, d := range disks {
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
		out = append(out, spec)
	}
	return out
}

func vifSpecs(vifs []api.Vif) []string {
	var out []string
	for _, v := range vifs {
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
		if v.MTU > 0 {
			parts = append(parts, fmt.Sprintf("mtu=%d", v.MTU))
		}
		out = append(out, strings.Join(parts, ","))
	}
	return out
}

// formatPolicy writes how the domain is run: actions, CPU placement and
// share, boot order and clock.
func formatPolicy(w *cfgWriter, s api.DomainSpec) {
	w.kv("on_poweroff", quote(s.OnPoweroff))
	w.kv("on_reboot", quote(s.OnReboot))
	w.kv("on_crash", quote(s.OnCrash))
	w.kv("on_watchdog", quote(s.OnWatchdog))
	if s.Accel != "" {
		w.kv("accel", quote(s.Accel))
	}
	if s.CPUs != "" {
		w.kv("cpus", formatCPUs(s.CPUs))
	}
	w.kv("cpu_weight", fmt.Sprint(s.CPUWeight))
	w.kv("cap", fmt.Sprint(s.Cap))
	if s.HotplugSlots > 0 {
		w.kv("hotplug_slots", fmt.Sprint(s.HotplugSlots))
	}
	if s.TransferQuota > 0 {
		w.kv("transfer_quota", quote(fmt.Sprint(s.TransferQuota)))
	}
	if s.TransferAction != "" {
		w.kv("transfer_action", quote(s.TransferAction))
	}
	if s.Bootloader != "" {
		w.kv("bootloader", quote(s.Bootloader))
	}
	if s.Boot != "" {
		w.kv("boot", quote(s.Boot))
	}
	if s.Localtime {
		w.kv("localtime", "1")
	}
	if s.RTCOffsetSec != 0 {
		w.kv("rtc_timeoffset", quote(fmt.Sprint(s.RTCOffsetSec)))
	}
}

// formatCPUs writes cpus=: a per-vCPU list (joined with ; by decodeCPUs)
// goes back to a list.
func formatCPUs(cpus string) string {
	if !strings.Contains(cpus, ";") {
		return quote(cpus)
	}
	var items []string
	for _, c := range strings.Split(cpus, ";") {
		items = append(items, quote(c))
	}
	return "[ " + strings.Join(items, ", ") + " ]"
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
		where := "tap on bridge " + v.Bridge
		if v.MTU > 0 {
			where += fmt.Sprintf(", mtu %d", v.MTU)
		}
		ip := ""
		if len(v.IP) > 0 {
			ip = ", ip " + strings.Join(v.IP, " ")
		}
		out = append(out, fmt.Sprintf("  vif %d -> %s NIC %s, %s%s", i, v.Model, v.MAC, where, ip))
	}
	if s.VNC {
		out = append(out, vncSummary(s))
	}
	out = append(out, fmt.Sprintf("  on_poweroff %s, on_reboot %s, on_crash %s", s.OnPoweroff, s.OnReboot, s.OnCrash))
	return out
}
