package client

import (
	"context"
	"net/url"

	"github.com/ringfence/ringfence/internal/api"
)

// UsageQuery picks usage rows (GET /1.0/usage): From/To are RFC 3339
// ("" = this month so far); Tenant nil = any ("" = the host's own).
type UsageQuery struct {
	From, To, Domain, By string
	Tenant               *string
}

// Usage reads every page of a usage query.
func (c *Client) Usage(ctx context.Context, q UsageQuery) ([]api.UsageRow, error) {
	v := url.Values{}
	for k, s := range map[string]string{"from": q.From, "to": q.To, "domain": q.Domain, "by": q.By} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Tenant != nil {
		v.Set("tenant", *q.Tenant)
	}
	var rows []api.UsageRow
	for {
		var page api.UsagePage
		if err := c.do(ctx, "GET", "/usage?"+v.Encode(), nil, &page); err != nil {
			return nil, err
		}
		rows = append(rows, page.Rows...)
		if page.Next == "" {
			return rows, nil
		}
		v.Set("cursor", page.Next)
	}
}

// Invoice rates a month (YYYY-MM) with the daemon's price file, for one
// tenant or (nil) all.
func (c *Client) Invoice(ctx context.Context, month string, tenant *string) (api.Invoice, error) {
	v := url.Values{"month": {month}}
	if tenant != nil {
		v.Set("tenant", *tenant)
	}
	var out api.Invoice
	err := c.do(ctx, "GET", "/usage/invoice?"+v.Encode(), nil, &out)
	return out, err
}
