package client

import (
	"context"

	"github.com/ringfence/ringfence/internal/api"
)

// Tenants lists the tenants the caller may see, with quota and usage.
func (c *Client) Tenants(ctx context.Context) ([]api.Tenant, error) {
	var out []api.Tenant
	err := c.do(ctx, "GET", "/tenants", nil, &out)
	return out, err
}

// Tenant is one tenant with its quota and usage.
func (c *Client) Tenant(ctx context.Context, name string) (api.Tenant, error) {
	var out api.Tenant
	err := c.do(ctx, "GET", "/tenants/"+seg(name), nil, &out)
	return out, err
}

// CreateTenant makes a tenant, reserving its memory and vCPUs.
func (c *Client) CreateTenant(ctx context.Context, req api.TenantRequest) (api.Tenant, error) {
	var out api.Tenant
	err := c.do(ctx, "POST", "/tenants", req, &out)
	return out, err
}

// UpdateTenant changes a tenant's quota (fields left nil keep theirs).
func (c *Client) UpdateTenant(ctx context.Context, name string, u api.TenantUpdate) (api.Tenant, error) {
	var out api.Tenant
	err := c.do(ctx, "PUT", "/tenants/"+seg(name), u, &out)
	return out, err
}

// DeleteTenant removes a tenant that owns nothing.
func (c *Client) DeleteTenant(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/tenants/"+seg(name), nil, nil)
}
