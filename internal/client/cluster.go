package client

import (
	"context"

	"github.com/ringfence/ringfence/internal/api"
)

// ClusterInit makes this host the first of a cluster.
func (c *Client) ClusterInit(ctx context.Context, req api.ClusterInitRequest) (api.ClusterStatus, error) {
	var out api.ClusterStatus
	return out, c.do(ctx, "POST", "/cluster/init", req, &out)
}

// ClusterJoin joins this host to its authority's cluster.
func (c *Client) ClusterJoin(ctx context.Context, req api.ClusterJoinRequest) (api.ClusterStatus, error) {
	var out api.ClusterStatus
	return out, c.do(ctx, "POST", "/cluster/join", req, &out)
}

// ClusterStatus is this host's view of its cluster.
func (c *Client) ClusterStatus(ctx context.Context) (api.ClusterStatus, error) {
	var out api.ClusterStatus
	return out, c.do(ctx, "GET", "/cluster", nil, &out)
}

// ClusterLeave takes this host out of its cluster.
func (c *Client) ClusterLeave(ctx context.Context) error {
	return c.do(ctx, "POST", "/cluster/leave", nil, nil)
}

// Evacuate live-migrates every domain off a host of the cluster.
func (c *Client) Evacuate(ctx context.Context, host string, req api.EvacuateRequest) (api.Evacuation, error) {
	var out api.Evacuation
	return out, c.do(ctx, "POST", "/cluster/hosts/"+seg(host)+"/evacuate", req, &out)
}

// Resume lets an evacuated host take domains again.
func (c *Client) Resume(ctx context.Context, host string) (api.ClusterStatus, error) {
	var out api.ClusterStatus
	return out, c.do(ctx, "POST", "/cluster/hosts/"+seg(host)+"/resume", nil, &out)
}

// SetHA turns a domain's HA on or off.
func (c *Client) SetHA(ctx context.Context, name string, on bool) (api.Domain, error) {
	var out api.Domain
	return out, c.do(ctx, "PUT", "/domains/"+seg(name)+"/ha", api.HARequest{On: on}, &out)
}

// ClusterPlan is the cluster's N+1 plan for its HA domains.
func (c *Client) ClusterPlan(ctx context.Context) (api.HAPlan, error) {
	var out api.HAPlan
	return out, c.do(ctx, "GET", "/cluster/plan", nil, &out)
}
