package client

import (
	"context"

	"github.com/ringfence/ringfence/internal/api"
)

// VCPUs lists a domain's vCPUs (xl vcpu-list).
func (c *Client) VCPUs(ctx context.Context, name string) ([]api.VCPU, error) {
	var out []api.VCPU
	return out, c.do(ctx, "GET", "/domains/"+seg(name)+"/vcpus", nil, &out)
}

// Rename gives a domain a new name and returns it as it is afterwards.
func (c *Client) Rename(ctx context.Context, name, newName string) (api.Domain, error) {
	var out api.Domain
	return out, c.do(ctx, "POST", "/domains/"+seg(name)+"/rename", api.RenameRequest{Name: newName}, &out)
}

// DumpCore writes a domain's memory to an ELF core on the daemon's host.
func (c *Client) DumpCore(ctx context.Context, name string, req api.DumpCoreRequest, progress func(api.JobProgress)) (api.DumpCoreResult, error) {
	var out api.DumpCoreResult
	return out, c.doProgress(ctx, "POST", "/domains/"+seg(name)+"/dump-core", req, progress, &out)
}
