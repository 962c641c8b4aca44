package config

import (
	"fmt"

	"github.com/ringfence/ringfence/internal/spec"
)

// specList reads a list of quoted specs (disk, vif). A single string is
// read as one spec, which xl does not do (it wants a list and ignores the
// key): said, since the two readings differ.
func (d *decoder) specList(key string, v Value) ([]Value, error) {
	switch v.Kind {
	case String:
		d.warn(v.Pos, key, "%s = '...' is a single string, not a list: xl ignores it (it wants %s = [ '...' ]); Ringfence reads it as one %s", key, key, key)
		return []Value{v}, nil
	case List:
	default:
		return nil, fmt.Errorf("expected a list of quoted specs like [ '...', '...' ]")
	}
	for _, it := range v.Items {
		if it.Kind != String {
			return nil, &Error{Pos: it.Pos, Msg: fmt.Sprintf("%s: every item must be a quoted spec like '...'", key)}
		}
	}
	return v.Items, nil
}

// decodeDisks reads xl-disk-configuration(5) specs: positional
// "[prefix:]target,vdev,access" or key=value form. Each bad spec is an
// error at its own position; the good ones are kept.
func decodeDisks(d *decoder, v Value) error {
	items, err := d.specList("disk", v)
	if err != nil {
		return err
	}
	d.spec.Disks, d.items["disk"] = nil, nil
	seen := map[string]bool{}
	for _, it := range items {
		disk, notes, err := spec.ParseDisk(it.Str)
		for _, n := range notes {
			d.note(it.Pos, "disk", n)
		}
		if err != nil {
			d.errorf(it.Pos, "disk: %v", err)
			continue
		}
		if seen[disk.VDev] {
			d.errorf(it.Pos, "disk: vdev %q is used twice", disk.VDev)
			continue
		}
		seen[disk.VDev] = true
		d.spec.Disks = append(d.spec.Disks, disk)
		d.items["disk"] = append(d.items["disk"], it.Pos)
	}
	return nil
}

// decodeVifs reads xl-network-configuration(5) specs, one NIC each.
func decodeVifs(d *decoder, v Value) error {
	items, err := d.specList("vif", v)
	if err != nil {
		return err
	}
	d.spec.Vifs, d.items["vif"] = nil, nil
	for _, it := range items {
		vif, notes, err := spec.ParseVif(it.Str)
		for _, n := range notes {
			d.note(it.Pos, "vif", n)
		}
		if err != nil {
			d.errorf(it.Pos, "vif: %v", err)
			continue
		}
		d.spec.Vifs = append(d.spec.Vifs, vif)
		d.items["vif"] = append(d.items["vif"], it.Pos)
	}
	return nil
}
