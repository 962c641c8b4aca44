package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/store"
)

// Chains remembers every overlay Ringfence made on an image (a clone's
// disks, a volume made --from a template): the image is then a backing
// file, and writing it would corrupt every overlay on it, silently and
// later (a filesystem check on the overlay finds it). So a writable use
// of an image that has overlays is refused with the chain and the fix,
// whoever asks (a domain file, block-attach, a volume resize).
type Chains struct{ st store.Store }

// NewChains returns the registry kept in st.
func NewChains(st store.Store) *Chains { return &Chains{st: st} }

const keyChains = "chains/"

// Dependent is one image made on a base.
type Dependent struct {
	Path   string    `json:"path"`
	Domain string    `json:"domain,omitempty"` // whose disk it was made for
	Why    string    `json:"why"`              // "clone web01 web01-test", "volume create --from"
	Made   time.Time `json:"made"`
}

type chainRecord struct {
	Base     string      `json:"base"`
	Overlays []Dependent `json:"overlays"`
}

func chainKey(base string) string {
	s := sha256.Sum256([]byte(base))
	return keyChains + hex.EncodeToString(s[:12])
}

// canonical is the path as the chain records it (symlinks resolved).
func canonical(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}

// Record notes that overlay was made on base.
func (c *Chains) Record(ctx context.Context, base string, o Dependent) error {
	if c == nil {
		return nil
	}
	base, o.Path = canonical(base), canonical(o.Path)
	if o.Made.IsZero() {
		o.Made = time.Now().UTC()
	}
	return c.st.Update(ctx, func(tx store.Tx) error {
		rec := chainRecord{Base: base}
		if b, err := tx.Get(chainKey(base)); err == nil && b != nil {
			json.Unmarshal(b, &rec)
		}
		rec.Overlays = append(rec.Overlays, o)
		b, _ := json.Marshal(rec)
		return tx.Put(chainKey(base), b)
	})
}

// Dependents are the overlays that still stand on base: recorded, still
// there, and still naming base in their header (one deleted, or rebased,
// no longer counts).
func (c *Chains) Dependents(ctx context.Context, base string) []Dependent {
	if c == nil {
		return nil
	}
	base = canonical(base)
	b, err := c.st.Get(ctx, chainKey(base))
	if err != nil || b == nil {
		return nil
	}
	var rec chainRecord
	if json.Unmarshal(b, &rec) != nil || rec.Base != base {
		return nil
	}
	var out []Dependent
	for _, o := range rec.Overlays {
		if _, err := os.Stat(o.Path); err != nil {
			continue
		}
		links, err := BackingChain(o.Path, "qcow2")
		if err != nil || len(links) == 0 || canonical(links[0].Path) != base {
			continue
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Made.Before(out[j].Made) })
	return out
}

// CheckWritable refuses a writable use of path while overlays stand on
// it, naming them and what to do.
func (c *Chains) CheckWritable(ctx context.Context, what, path string) error {
	deps := c.Dependents(ctx, path)
	if len(deps) == 0 {
		return nil
	}
	var list []string
	current := ""
	for _, o := range deps {
		s := o.Path
		if o.Domain != "" {
			s += fmt.Sprintf(" (%s's disk since `%s`, %s)", o.Domain, o.Why, o.Made.Format("2006-01-02 15:04"))
		} else {
			s += fmt.Sprintf(" (%s, %s)", o.Why, o.Made.Format("2006-01-02 15:04"))
		}
		list = append(list, s)
		if o.Domain != "" && current == "" {
			current = o.Path
		}
	}
	fix := "copy it first (qemu-img convert) if you need it writable"
	if current != "" {
		fix = fmt.Sprintf("the domain's current disk is %s: point the domain file at it (`ringfence config export NAME` writes one that does), or copy the base first (qemu-img convert)", current)
	}
	return api.Errorf(api.ErrConflict, "%s %s is the backing file of %s: writing it would corrupt them; open it read-only, or %s",
		what, path, strings.Join(list, " and "), fix)
}
