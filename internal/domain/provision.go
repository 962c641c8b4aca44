package domain

// Provisioning (`create --image`): a domain made from an OS image. Its
// first disk is a thin clone of the image's template, grown to
// disk_size, in the image's pool; its second a cloud-init seed made from
// its settings at every start (so changed settings reach the guest);
// it boots the image's kernel directly unless bootloader= asks for the
// disk's own GRUB through the firmware.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/cloudinit"
	"github.com/ringfence/ringfence/internal/config"
	"github.com/ringfence/ringfence/internal/revert"
	domspec "github.com/ringfence/ringfence/internal/spec"
	"github.com/ringfence/ringfence/internal/storage"
)

// Where a provisioned domain's files live in its image's pool.
func provisionDisk(poolDir, name string) string { return filepath.Join(poolDir, name+"-disk.qcow2") }
func provisionSeed(poolDir, name string) string { return filepath.Join(poolDir, name+"-seed.iso") }

// provisioned is what a provisioned domain is made of.
type provisioned struct {
	image      api.Image
	disk, seed string
	size       int64
	settings   cloudinit.Settings
}

// planProvision checks a provisioned spec and works out its files,
// making nothing: an unknown image, a disk smaller than the template or
// an address outside its network is refused here.
func (m *Manager) planProvision(ctx context.Context, spec api.DomainSpec) (provisioned, error) {
	p := spec.Provision
	var pl provisioned
	pools, err := storage.NewPools(m.o.Store, nil).List(ctx)
	if err != nil {
		return pl, err
	}
	im, err := storage.FindImage(pools, p.Image, p.ImagePool)
	if err != nil {
		return pl, err
	}
	pl.image, pl.size = im, im.SizeB
	if p.DiskSizeB > 0 {
		if p.DiskSizeB < im.SizeB {
			return pl, api.Errorf(api.ErrInvalid, "disk_size %d MiB is smaller than image %s (%d MiB): give at least %dM",
				p.DiskSizeB>>20, im.Name, im.SizeB>>20, im.SizeB>>20)
		}
		pl.size = p.DiskSizeB
	}
	dir := filepath.Dir(im.Template)
	pl.disk, pl.seed = provisionDisk(dir, spec.Name), provisionSeed(dir, spec.Name)
	if p.Disk != "" && p.Seed != "" { // made before, perhaps under another name
		pl.disk, pl.seed = p.Disk, p.Seed
	}
	if p.PasswordHash == api.HiddenPassword {
		return pl, api.Errorf(api.ErrInvalid, "root_password_hash: %q stands for a hash set before (config export writes it); a new domain needs the hash itself", api.HiddenPassword)
	}
	if err := cloudinit.CheckUserData(p.UserData); err != nil {
		return pl, api.Errorf(api.ErrInvalid, "user_data: %v", err)
	}
	for _, k := range p.SSHKeys {
		if err := config.ValidSSHKey(k); err != nil {
			return pl, api.Errorf(api.ErrInvalid, "ssh_authorized_keys: %v", err)
		}
	}
	host := p.Hostname
	if host == "" {
		host = spec.Name
	}
	pl.settings = cloudinit.Settings{Hostname: host, SSHKeys: p.SSHKeys, PasswordHash: p.PasswordHash, UserData: p.UserData}
	for i, v := range spec.Vifs {
		if v.MAC == "" {
			v.MAC = domspec.GenerateMAC(spec.Name, i) // as Normalize will
		}
		nic, err := m.seedNIC(v)
		if err != nil {
			return pl, fmt.Errorf("vif %d: %w", i, err)
		}
		pl.settings.NICs = append(pl.settings.NICs, nic)
	}
	return pl, nil
}

// seedNIC is a vif as cloud-init configures it: ip= on a network with a
// subnet is a static address with the network's gateway as route and
// DNS server; anything else asks DHCP.
func (m *Manager) seedNIC(v api.Vif) (cloudinit.NIC, error) {
	nic := cloudinit.NIC{MAC: v.MAC}
	if len(v.IP) == 0 {
		return nic, nil
	}
	var n api.Network
	ok := false
	if m.o.Networks != nil {
		n, ok = m.o.Networks.Network(v.Bridge)
	}
	if !ok || n.Subnet == "" {
		return nic, api.Errorf(api.ErrInvalid, "ip=%s on bridge %s: a static address needs a network with a subnet (network create NAME --nat --subnet CIDR); leave ip= out for DHCP",
			v.IP[0], v.Bridge)
	}
	pfx, err := netip.ParsePrefix(n.Subnet)
	if err != nil {
		return nic, err
	}
	ip, err := netip.ParseAddr(v.IP[0])
	gw := pfx.Addr().Next()
	if err != nil || !pfx.Contains(ip) || ip == pfx.Addr() || ip == gw {
		return nic, api.Errorf(api.ErrInvalid, "ip=%s is not a guest address of network %s (%s; %s is the gateway): pick one inside it",
			v.IP[0], n.Name, n.Subnet, gw)
	}
	nic.Address = netip.PrefixFrom(ip, pfx.Bits()).String()
	nic.Gateway, nic.DNS = gw.String(), []string{gw.String()}
	return nic, nil
}

// provision makes (or, at a later start, keeps) a provisioned domain's
// disk, writes its seed again and puts both and the boot files into
// spec. What it makes is undone by r. A spec without Provision is left
// alone.
func (m *Manager) provision(ctx context.Context, spec *api.DomainSpec, r *revert.Reverter) error {
	if spec.Provision == nil {
		return nil
	}
	pl, err := m.planProvision(ctx, *spec)
	if err != nil {
		return err
	}
	if _, err := os.Stat(pl.disk); errors.Is(err, os.ErrNotExist) {
		if err := storage.Overlay(pl.image.Template, "qcow2", pl.disk, pl.size); err != nil {
			return fmt.Errorf("cloning image %s for %s: %w", pl.image.Name, spec.Name, err)
		}
		r.Add(func() { os.Remove(pl.disk) })
		if m.o.Chains != nil {
			m.o.Chains.Record(ctx, pl.image.Template, storage.Dependent{Path: pl.disk, Domain: spec.Name, Why: "create --image " + pl.image.Name})
		}
	}
	_, statErr := os.Stat(pl.seed)
	files, err := cloudinit.Render(pl.settings)
	if err != nil {
		return err
	}
	if err := cloudinit.Write(ctx, pl.seed, files); err != nil {
		return err
	}
	if statErr != nil {
		r.Add(func() { os.Remove(pl.seed) })
	}
	provisionSpec(spec, pl)
	return nil
}

// unmade are the guest names of the disk and seed not made yet (a dry
// run checks everything else about them).
func (pl provisioned) unmade() map[string]bool {
	out := map[string]bool{}
	for guest, p := range map[string]string{"vda": pl.disk, "vdb": pl.seed} {
		if _, err := os.Stat(p); err != nil {
			out[guest] = true
		}
	}
	return out
}

// provisionSpec puts a provisioned domain's disks (first, once) and boot
// files into its spec.
func provisionSpec(spec *api.DomainSpec, pl provisioned) {
	has := false
	for _, d := range spec.Disks {
		has = has || d.Target == pl.disk
	}
	if !has {
		own := []api.Disk{
			{Target: pl.disk, VDev: "xvda", Format: "qcow2", Access: "rw"},
			{Target: pl.seed, VDev: "xvdb", Format: "raw", Access: "ro"},
		}
		spec.Disks = append(own, spec.Disks...)
	}
	p := *spec.Provision
	p.Disk, p.Seed = pl.disk, pl.seed
	spec.Provision = &p
	spec.GuestAgent = true
	if spec.Kernel == "" && spec.Bootloader == "" {
		spec.Kernel, spec.Ramdisk = pl.image.Kernel, pl.image.Initrd
		spec.Cmdline = strings.TrimSpace(pl.image.Cmdline + " " + spec.Cmdline)
	}
}
