package cluster

import (
	"context"

	"github.com/ringfence/ringfence/internal/api"
)

// otherOwner is the host other than this one that has a domain of that
// name ("" when none, or this host is in no cluster).
func (c *Cluster) otherOwner(ctx context.Context, name string) (string, error) {
	if !c.In() {
		return "", nil
	}
	owner, err := c.Owner(ctx, name)
	if err != nil || owner == c.snapshot().Name {
		return "", err
	}
	return owner, nil
}

// ClaimFrom is Claim for a domain made from a file or a stream (a
// restore, an import, an incoming migration): the name is refused when
// another host has it, unless that host is from, the source of the
// migration that brings the domain here.
func (c *Cluster) ClaimFrom(ctx context.Context, name, from string) error {
	owner, err := c.otherOwner(ctx, name)
	if err != nil || owner == "" || owner == from {
		return err
	}
	return api.Errorf(api.ErrConflict, "domain %q is on host %q of this cluster and names are cluster-wide: rename one of them (`ringfence rename`, or import with --name), or remove that one first; nothing changed", name, owner)
}
