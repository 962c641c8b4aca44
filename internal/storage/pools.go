package storage

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store"
)

const keyPools = "pools/"

// Pools is the host's pool registry, kept in the state store.
type Pools struct {
	st store.Store
	mu sync.Mutex // serialises changes, so two creates cannot race a check
	// Users reports the domains whose disks include path (set by the
	// daemon); volumes in use cannot be deleted.
	Users func(path string) []string
	// Policy limits where pools may be (nil: anywhere).
	Policy *Policy
	// Chains records the thin clones made here (their templates are
	// never written afterwards).
	Chains *Chains
}

// Dirs are the pools' directories (for the disk policy).
func (p *Pools) Dirs() []string {
	pools, _ := p.List(context.Background())
	var out []string
	for _, pl := range pools {
		out = append(out, pl.Dir)
	}
	return out
}

// NewPools returns the registry on st.
func NewPools(st store.Store, users func(string) []string) *Pools {
	return &Pools{st: st, Users: users}
}

// List returns every pool.
func (p *Pools) List(ctx context.Context) ([]api.Pool, error) {
	kvs, err := p.st.List(ctx, keyPools)
	if err != nil {
		return nil, err
	}
	out := []api.Pool{}
	for _, kv := range kvs {
		var pl api.Pool
		if json.Unmarshal(kv.Value, &pl) == nil {
			out = append(out, pl)
		}
	}
	return out, nil
}

// NotFound is the answer for a pool that does not exist (and, to a
// tenant, for one it may not see).
func NotFound(name string) error {
	return api.Errorf(api.ErrNotFound, "no pool named %q (see `ringfence pool list`)", name)
}

// CheckOwner checks a pool's or network's owner: a tenant's name, and
// shared only for the host's own (a tenant's object is its own).
func CheckOwner(kind, tenant string, shared bool) error {
	if tenant == "" {
		return nil
	}
	if err := CheckName("tenant", tenant); err != nil {
		return err
	}
	if shared {
		return api.Errorf(api.ErrInvalid, "a %s of tenant %s cannot be shared: only the host's %ss are (drop --shared or --tenant)", kind, tenant, kind)
	}
	return nil
}

// Get returns one pool.
func (p *Pools) Get(ctx context.Context, name string) (api.Pool, error) {
	var pl api.Pool
	if err := CheckName("pool", name); err != nil {
		return pl, err
	}
	b, err := p.st.Get(ctx, keyPools+name)
	if err != nil || b == nil {
		return pl, NotFound(name)
	}
	err = json.Unmarshal(b, &pl)
	return pl, err
}

// Create registers a directory pool, making the directory (0700) if it is
// not there.
func (p *Pools) Create(ctx context.Context, req api.Pool) (api.Pool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := CheckName("pool", req.Name); err != nil {
		return req, err
	}
	if err := CheckOwner("pool", req.Tenant, req.Shared); err != nil {
		return req, err
	}
	if _, err := p.Get(ctx, req.Name); err == nil {
		return req, api.Errorf(api.ErrConflict, "a pool named %q already exists", req.Name)
	}
	pools, err := p.List(ctx)
	if err != nil {
		return req, err
	}
	dir, err := CheckPoolDir(req.Dir, pools)
	if err != nil {
		return req, err
	}
	if err := p.Policy.Check(UsePool, dir); err != nil {
		return req, err
	}
	made := false
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return req, err
		}
		made = true
	}
	if req.Cluster && req.Tenant != "" {
		return req, api.Errorf(api.ErrInvalid, "a pool of tenant %s cannot be a cluster pool: only the host's pools are (drop --cluster or --tenant)", req.Tenant)
	}
	pl := api.Pool{Name: req.Name, Dir: dir, Tenant: req.Tenant, Shared: req.Shared, Cluster: req.Cluster}
	b, _ := json.Marshal(pl)
	if err := store.Put(ctx, p.st, keyPools+pl.Name, b); err != nil {
		if made {
			os.Remove(dir)
		}
		return req, err
	}
	return pl, nil
}

// Delete forgets an empty pool (its directory stays if anything else is
// in it; an empty one made for it is removed).
func (p *Pools) Delete(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	pl, err := p.Get(ctx, name)
	if err != nil {
		return err
	}
	if vols, _ := Volumes(pl); len(vols) > 0 {
		var names []string
		for _, v := range vols {
			names = append(names, v.Name)
		}
		return api.Errorf(api.ErrConflict, "pool %s still has volumes (%s); delete them first", name, strings.Join(names, ", "))
	}
	if err := store.Delete(ctx, p.st, keyPools+name); err != nil {
		return err
	}
	os.Remove(pl.Dir) // only succeeds when empty
	return nil
}

// CreateVolume makes a volume in pool.
func (p *Pools) CreateVolume(ctx context.Context, pool string, req api.VolumeRequest) (api.Volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pl, err := p.Get(ctx, pool)
	if err != nil {
		return api.Volume{}, err
	}
	v, err := CreateVolume(pl, req)
	if err == nil && req.From != "" {
		tpl := filepath.Join(pl.Dir, req.From)
		if err := p.Chains.Record(ctx, tpl, Dependent{Path: v.Path, Why: "volume create " + pool + " " + req.Name + " --from " + req.From}); err != nil {
			os.Remove(v.Path)
			return api.Volume{}, err
		}
	}
	return v, err
}

// Volumes lists a pool's volumes.
func (p *Pools) Volumes(ctx context.Context, pool string) ([]api.Volume, error) {
	pl, err := p.Get(ctx, pool)
	if err != nil {
		return nil, err
	}
	return Volumes(pl)
}

// ResizeVolume grows a volume that no running domain uses.
func (p *Pools) ResizeVolume(ctx context.Context, pool, name string, size int64) (api.Volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pl, err := p.Get(ctx, pool)
	if err != nil {
		return api.Volume{}, err
	}
	v, err := Volume(pl, name)
	if err != nil {
		return v, err
	}
	if users := p.users(v.Path); len(users) > 0 {
		return v, api.Errorf(api.ErrConflict, "volume %s is a disk of %s; resize it while no domain uses it", name, strings.Join(users, ", "))
	}
	if err := p.Chains.CheckWritable(ctx, "volume", v.Path); err != nil {
		return v, err
	}
	return ResizeVolume(pl, name, size)
}

// DeleteVolume removes a volume no domain refers to.
func (p *Pools) DeleteVolume(ctx context.Context, pool, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	pl, err := p.Get(ctx, pool)
	if err != nil {
		return err
	}
	v, err := Volume(pl, name)
	if err != nil {
		return err
	}
	if users := p.users(v.Path); len(users) > 0 {
		return api.Errorf(api.ErrConflict, "volume %s is attached to %s; destroy or detach it first", name, strings.Join(users, ", "))
	}
	return DeleteVolume(pl, name)
}

func (p *Pools) users(path string) []string {
	if p.Users == nil {
		return nil
	}
	return p.Users(path)
}
