package daemon

import (
	"context"
	"errors"
	"slices"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/cluster"
	"github.com/ringfence/ringfence/internal/storage"
)

// create --image in a cluster goes only to a host that has the image:
// each host publishes its images' names; --host on a host without it is
// refused naming the hosts that have it, and placement chooses among
// those.

// publishImages records this host's images in the cluster.
func (s *Server) publishImages(ctx context.Context) error {
	pools, err := s.pools.List(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, im := range storage.Images(pools) {
		names = append(names, im.Name)
	}
	return s.cluster.PublishImages(ctx, names)
}

// imageElsewhere says whether req is a create --image whose image this
// host lacks (its dry run here then checks the rest of the spec only:
// the host chosen checks the image).
func (s *Server) imageElsewhere(ctx context.Context, req api.CreateRequest) bool {
	p := req.Spec.Provision
	if p == nil || !s.cluster.In() || ctx.Value(forwardedKey{}) != nil {
		return false
	}
	pools, err := s.pools.List(ctx)
	if err != nil {
		return false
	}
	_, err = storage.FindImage(pools, p.Image, p.ImagePool)
	return errors.Is(err, api.ErrNotFound)
}

// imageHosts narrows hosts (placement's order, or the one --host names)
// to those that have req's image; none is a refusal naming where it is.
func (s *Server) imageHosts(ctx context.Context, req api.CreateRequest, pin string, hosts []string) ([]string, error) {
	p := req.Spec.Provision
	if p == nil {
		return hosts, nil
	}
	have, err := s.cluster.ImageHosts(ctx, p.Image)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, h := range hosts {
		if slices.Contains(have, h) {
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		return nil, cluster.ImageRefusal(p.Image, pin, have)
	}
	return out, nil
}
