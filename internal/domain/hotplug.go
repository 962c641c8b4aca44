package domain

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/engine"
	"github.com/ringfence/ringfence/internal/revert"
	domspec "github.com/ringfence/ringfence/internal/spec"
	"github.com/ringfence/ringfence/internal/storage"
)

// lockHotplug returns the running domain, locked, and its engine's
// hot-plug side.
func (m *Manager) lockHotplug(name string) (*dom, engine.BlockHotplug, error) {
	d, err := m.lockRunning(name)
	if err != nil {
		return nil, nil, err
	}
	hp, ok := d.inst.(engine.BlockHotplug)
	if !ok {
		d.mu.Unlock()
		return nil, nil, api.Errorf(api.ErrUnavailable, "this engine cannot change a running domain's disks")
	}
	return d, hp, nil
}

// checkImage checks an image for running domain name (block-attach,
// cd-insert) as a domain file's are checked, for the domain's owner.
func (m *Manager) checkImage(name, what, p string, use storage.Use, format string) error {
	tenant, err := m.Owner(name)
	if err != nil {
		return err
	}
	return m.checkFile(tenant, what, p, use, format, false)
}

// BlockAttach adds a disk (an xl disk spec) to a running domain, on a
// spare root port; the guest sees a new /dev/vdX.
func (m *Manager) BlockAttach(ctx context.Context, name, spec string) (_ api.Disk, err error) {
	defer m.after(m.about(ctx, name), api.EvDeviceAdded, "disk "+spec, &err)
	dk, _, err := domspec.ParseDisk(spec)
	if err != nil {
		return dk, api.Errorf(api.ErrInvalid, "disk spec %q: %v", spec, err)
	}
	if dk.CDROM {
		return dk, api.Errorf(api.ErrInvalid, "CD-ROM drives cannot be hot-plugged; give the domain an empty drive (',hdc:cdrom,r') and use cd-insert")
	}
	if dk.Format == "" {
		dk.Format = "raw"
	}
	if dk.Access == "" {
		dk.Access = "rw"
	}
	use := storage.UseDisk
	if dk.Access == "ro" {
		use = storage.UseDiskRO
	}
	if err := m.checkImage(name, "disk "+dk.VDev, dk.Target, use, dk.Format); err != nil {
		return dk, err
	}
	d, hp, err := m.lockHotplug(name)
	if err != nil {
		return dk, err
	}
	defer d.mu.Unlock()
	used := map[string]bool{}
	for _, x := range d.rec.Spec.Disks {
		used[x.Guest] = true
		if x.VDev == dk.VDev {
			return dk, api.Errorf(api.ErrConflict, "%s already has a disk %s", name, dk.VDev)
		}
	}
	for i := 0; i < 26 && dk.Guest == ""; i++ {
		if g := "vd" + string(rune('a'+i)); !used[g] {
			dk.Guest = g
		}
	}
	if dk.Port = freePort(d.rec.Spec); dk.Port == "" {
		return dk, noSlot(name, d.rec.Spec)
	}
	m.mu.Lock()
	err = m.diskInUse(api.DomainSpec{Disks: []api.Disk{dk}})
	m.mu.Unlock()
	if err != nil {
		return dk, err
	}
	r := revert.New()
	defer r.Fail()
	if err := hp.AttachDisk(ctx, engine.Disk{ID: dk.Guest, Port: dk.Port, Path: dk.Target, Format: dk.Format, ReadOnly: dk.Access == "ro"}); err != nil {
		return dk, err
	}
	r.Add(func() { hp.DetachDisk(context.Background(), dk.Guest) })
	r.Add(m.keepSpec(d))
	d.rec.Spec.Disks = append(append([]api.Disk(nil), d.rec.Spec.Disks...), dk)
	if err := m.save(ctx, d); err != nil {
		return dk, err
	}
	r.Success()
	m.view(d)
	m.o.Log.Info("disk attached", "name", name, "disk", dk.Guest, "target", dk.Target)
	return dk, nil
}

func findDisk(spec api.DomainSpec, vdev string) int {
	for i, x := range spec.Disks {
		if x.VDev == vdev || x.Guest == vdev {
			return i
		}
	}
	return -1
}

// BlockDetach removes a hot-plugged disk from a running domain.
func (m *Manager) BlockDetach(ctx context.Context, name, vdev string) (err error) {
	defer m.after(m.about(ctx, name), api.EvDeviceRemoved, "disk "+vdev, &err)
	d, hp, err := m.lockHotplug(name)
	if err != nil {
		return err
	}
	defer d.mu.Unlock()
	i := findDisk(d.rec.Spec, vdev)
	if i < 0 {
		return api.Errorf(api.ErrNotFound, "%s has no disk %s (see `ringfence block-list %s`)", name, vdev, name)
	}
	x := d.rec.Spec.Disks[i]
	if x.Port == "" {
		return api.Errorf(api.ErrConflict, "%s (%s) was there at boot, on a bus that cannot unplug; remove it from the domain file and restart the domain", vdev, x.Guest)
	}
	if err := hp.DetachDisk(ctx, x.Guest); err != nil {
		return err
	}
	disks := append([]api.Disk(nil), d.rec.Spec.Disks[:i]...)
	d.rec.Spec.Disks = append(disks, d.rec.Spec.Disks[i+1:]...)
	if err := m.save(ctx, d); err != nil {
		return err
	}
	m.view(d)
	m.o.Log.Info("disk detached", "name", name, "disk", x.Guest)
	return nil
}

// BlockList returns the domain's disks and, when it runs, what QEMU has.
func (m *Manager) BlockList(ctx context.Context, name string) ([]api.BlockDevice, error) {
	d, err := m.get(name)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var have map[string][2]bool
	if d.inst != nil {
		if hp, ok := d.inst.(engine.BlockHotplug); ok {
			have, _ = hp.Blocks(ctx)
		}
	}
	out := []api.BlockDevice{}
	for _, x := range d.rec.Spec.Disks {
		st := have[x.Guest]
		out = append(out, api.BlockDevice{Disk: x, Inserted: st[0], ReadOnly: st[1]})
	}
	return out, nil
}

// CDChange puts path into CD-ROM drive vdev of a running domain, or
// ejects its medium when path is "" (xl cd-insert / cd-eject).
func (m *Manager) CDChange(ctx context.Context, name, vdev, path string) (err error) {
	defer m.after(m.about(ctx, name), api.EvMediaChanged, vdev+" "+cmp.Or(path, "ejected"), &err)
	if path != "" {
		if err := m.checkImage(name, "medium", path, storage.UseDiskRO, "raw"); err != nil {
			return err
		}
	}
	d, hp, err := m.lockHotplug(name)
	if err != nil {
		return err
	}
	defer d.mu.Unlock()
	i := findDisk(d.rec.Spec, vdev)
	if i < 0 || !d.rec.Spec.Disks[i].CDROM {
		return api.Errorf(api.ErrNotFound, "%s has no CD-ROM drive %s; give it one in the domain file, e.g. disk = [ ',hdc:cdrom,r' ]", name, vdev)
	}
	if err := hp.ChangeMedium(ctx, d.rec.Spec.Disks[i].Guest, path); err != nil {
		return fmt.Errorf("changing the medium in %s: %w", vdev, err)
	}
	disks := append([]api.Disk(nil), d.rec.Spec.Disks...)
	disks[i].Target = path
	if path != "" {
		disks[i].Format = "raw"
	}
	d.rec.Spec.Disks = disks
	if err := m.save(ctx, d); err != nil {
		return err
	}
	m.view(d)
	return nil
}

// freePort is the first hot-plug root port no disk or vif of spec holds.
func freePort(spec api.DomainSpec) string {
	used := map[string]bool{}
	for _, x := range spec.Disks {
		used[x.Port] = true
	}
	for _, x := range spec.Vifs {
		used[x.Port] = true
	}
	for i := 0; i < spec.HotplugSlots; i++ {
		if p := engine.PortName(i); !used[p] {
			return p
		}
	}
	return ""
}

func noSlot(name string, spec api.DomainSpec) error {
	if spec.HotplugSlots == 0 {
		return api.Errorf(api.ErrInsufficient, "%s has no hot-plug slots: add hotplug_slots = 2 (up to 8) to its domain file and restart it (each slot costs the guest ~50 ms of boot under TCG)", name)
	}
	return api.Errorf(api.ErrInsufficient, "%s's %d hot-plug slots are all in use; detach a disk or vif first, or raise hotplug_slots", name, spec.HotplugSlots)
}

// vifsInUse refuses a vif whose MAC, or one of whose ip= addresses,
// another live domain's vif has on the same bridge (two would fight over
// one address; the network side refuses an address again when the tap is
// plugged, this says so before anything is made, as a clone needs).
// Caller holds m.mu.
func (m *Manager) vifsInUse(name string, vifs []api.Vif) error {
	for _, v := range vifs {
		br := m.bridge(v.Bridge)
		for other, ov := range m.views(true) {
			if other == name {
				continue
			}
			for _, x := range ov.Spec.Vifs {
				if m.bridge(x.Bridge) != br {
					continue
				}
				if x.MAC == v.MAC {
					return api.Errorf(api.ErrConflict, "mac %s is already used by domain %s on bridge %s; give this vif its own mac= (or leave it out for a generated one)", v.MAC, other, br)
				}
				for _, a := range x.IP {
					for _, b := range v.IP {
						if a == b {
							return api.Errorf(api.ErrConflict, "ip=%s is already used by %s on bridge %s; give this vif its own address", b, other, br)
						}
					}
				}
			}
		}
	}
	return nil
}

// NetworkAttach adds a vif (an xl vif spec) to a running domain: a new
// tap on the bridge, a NIC on a spare root port (xl network-attach).
func (m *Manager) NetworkAttach(ctx context.Context, name, spec string) (_ api.Vif, err error) {
	defer m.after(m.about(ctx, name), api.EvDeviceAdded, "vif "+spec, &err)
	v, _, err := domspec.ParseVif(spec)
	if err != nil {
		return v, api.Errorf(api.ErrInvalid, "vif spec %q: %v", spec, err)
	}
	domspec.VifDefaults(&v)
	d, hp, err := m.lockHotplug(name)
	if err != nil {
		return v, err
	}
	defer d.mu.Unlock()
	idx := len(d.rec.Spec.Vifs)
	if v.MAC == "" {
		v.MAC = domspec.GenerateMAC(name, idx)
	}
	if err := m.checkVif(d.tenant, v); err != nil {
		return v, api.Errorf(api.ErrCode(err, api.ErrInvalid), "%v", err)
	}
	for _, x := range d.rec.Spec.Vifs {
		if x.MAC == v.MAC {
			return v, api.Errorf(api.ErrConflict, "%s already has a vif with mac %s", name, v.MAC)
		}
	}
	if v.Port = freePort(d.rec.Spec); v.Port == "" {
		return v, noSlot(name, d.rec.Spec)
	}
	m.mu.Lock()
	err = m.vifsInUse(name, []api.Vif{v})
	m.mu.Unlock()
	if err != nil {
		return v, err
	}
	tap := tapName(d.rec.ID, idx)
	for n := idx; slices.Contains(d.rec.Taps, tap); n++ {
		tap = tapName(d.rec.ID, n+1) // an earlier detach freed a lower index
	}
	r := revert.New()
	defer r.Fail()
	if err := m.plugTap(ctx, name, tap, v); err != nil {
		return v, api.Errorf(api.ErrCode(err, api.ErrInvalid), "%v", err)
	}
	r.Add(func() { m.unplugTap(tap) })
	f, err := m.o.Networks.OpenTap(tap)
	if err != nil {
		return v, err
	}
	nic := engine.NIC{ID: engine.NICID(idx, v.Port), Tap: tap, MAC: v.MAC, Model: v.Model, Port: v.Port, MTU: v.MTU}
	err = hp.AttachNIC(ctx, nic, f)
	f.Close()
	if err != nil {
		return v, err
	}
	r.Add(func() { hp.DetachNIC(context.Background(), nic.ID) })
	r.Add(m.keepSpec(d))
	d.rec.Spec.Vifs = append(append([]api.Vif(nil), d.rec.Spec.Vifs...), v)
	d.rec.Taps = append(append([]string(nil), d.rec.Taps...), tap)
	if err := m.save(ctx, d); err != nil {
		return v, err
	}
	r.Success()
	m.view(d)
	m.o.Log.Info("vif attached", "name", name, "mac", v.MAC, "tap", tap)
	return v, nil
}

// keepSpec returns what puts d's devices (spec and taps) back as they are
// now: a hot-plug whose record cannot be saved is undone whole. Caller
// holds d.mu.
func (m *Manager) keepSpec(d *dom) func() {
	spec, taps := d.rec.Spec, d.rec.Taps
	return func() { d.rec.Spec, d.rec.Taps = spec, taps }
}

// findVif finds a vif by index (xl's devid) or MAC.
func findVif(spec api.DomainSpec, dev string) int {
	for i, x := range spec.Vifs {
		if fmt.Sprint(i) == dev || strings.EqualFold(x.MAC, dev) {
			return i
		}
	}
	return -1
}

// NetworkDetach removes a vif attached while the domain runs, and its tap.
func (m *Manager) NetworkDetach(ctx context.Context, name, dev string) (err error) {
	defer m.after(m.about(ctx, name), api.EvDeviceRemoved, "vif "+dev, &err)
	d, hp, err := m.lockHotplug(name)
	if err != nil {
		return err
	}
	defer d.mu.Unlock()
	i := findVif(d.rec.Spec, dev)
	if i < 0 {
		return api.Errorf(api.ErrNotFound, "%s has no vif %s (see `ringfence network-list %s`)", name, dev, name)
	}
	v := d.rec.Spec.Vifs[i]
	if v.Port == "" {
		return api.Errorf(api.ErrConflict, "vif %d was there at boot, on a bus that cannot unplug; remove it from the domain file and restart the domain", i)
	}
	if err := hp.DetachNIC(ctx, engine.NICID(i, v.Port)); err != nil {
		return err
	}
	if i < len(d.rec.Taps) {
		m.unplugTap(d.rec.Taps[i])
		taps := append([]string(nil), d.rec.Taps[:i]...)
		d.rec.Taps = append(taps, d.rec.Taps[i+1:]...)
	}
	vifs := append([]api.Vif(nil), d.rec.Spec.Vifs[:i]...)
	d.rec.Spec.Vifs = append(vifs, d.rec.Spec.Vifs[i+1:]...)
	if err := m.save(ctx, d); err != nil {
		return err
	}
	m.view(d)
	return nil
}

// NetworkList returns a domain's vifs with their taps.
func (m *Manager) NetworkList(name string) ([]api.NetworkDevice, error) {
	d, err := m.get(name)
	if err != nil {
		return nil, err
	}
	v := d.snap.Load()
	out := []api.NetworkDevice{}
	for i, x := range v.Spec.Vifs {
		nd := api.NetworkDevice{Vif: x, Index: i}
		if i < len(v.Taps) {
			nd.Tap = v.Taps[i]
			if m.o.Networks != nil {
				nd.Addresses = m.o.Networks.Addresses(nd.Tap)
			}
		}
		out = append(out, nd)
	}
	return out, nil
}
