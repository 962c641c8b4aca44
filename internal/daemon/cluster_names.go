package daemon

import (
	"context"

	"github.com/ringfence/ringfence/internal/auth"
)

// nameClaim is the domain manager's Names: a domain restored, imported
// or migrated in may not take a name another host of the cluster has,
// except the host a migration comes from (the peer that called).
type nameClaim struct{ s *Server }

func (n *nameClaim) Claim(ctx context.Context, name string) error {
	from := ""
	if p := principalOf(ctx); p.Kind == auth.Peer && p.Role == auth.PeerHost {
		from = p.Name
	}
	return n.s.cluster.ClaimFrom(ctx, name, from)
}
