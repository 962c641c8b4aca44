package client

import (
	"context"
	"io"
	"net/url"
	"strconv"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// API is GET /1.0: the API's version and the extensions the daemon
// serves.
func (c *Client) API(ctx context.Context) (api.APIInfo, error) {
	var out api.APIInfo
	return out, c.do(ctx, "GET", "", nil, &out)
}

// Audit reads the audit log: the records q picks.
func (c *Client) Audit(ctx context.Context, q AuditQuery) ([]api.AuditRecord, error) {
	v := url.Values{}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.FromSeq {
		v.Set("since", strconv.FormatUint(q.Since, 10))
	}
	for k, t := range map[string]time.Time{"since_time": q.SinceTime, "until": q.Until} {
		if !t.IsZero() {
			v.Set(k, t.UTC().Format(time.RFC3339Nano))
		}
	}
	for k, s := range map[string]string{"principal": q.Principal, "tenant": q.Tenant, "domain": q.Domain} {
		if s != "" {
			v.Set(k, s)
		}
	}
	var out []api.AuditRecord
	return out, c.do(ctx, "GET", "/audit?"+v.Encode(), nil, &out)
}

// AuditQuery picks audit records (GET /1.0/audit): after Since (when
// FromSeq) or from SinceTime, oldest first, else the newest Limit; before
// Until, of Principal, of Tenant's principals, about Domain.
type AuditQuery struct {
	Since            uint64
	FromSeq          bool
	SinceTime, Until time.Time
	Principal        string
	Tenant           string
	Domain           string
	Limit            int
}

// Metrics is GET /1.0/metrics: the Prometheus text format.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) { return c.text(ctx, "/metrics") }

// text GETs path's reply as it is (a text route).
func (c *Client) text(ctx context.Context, path string) ([]byte, error) {
	resp, err := c.send(ctx, "GET", path, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}
