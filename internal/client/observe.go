package client

import (
	"context"
	"fmt"
	"io"

	"github.com/ringfence/ringfence/internal/api"
)

// API is GET /1.0: the API's version and the extensions the daemon
// serves.
func (c *Client) API(ctx context.Context) (api.APIInfo, error) {
	var out api.APIInfo
	return out, c.do(ctx, "GET", "", nil, &out)
}

// Audit reads the audit log: the records after since (oldest first) when
// fromSeq, else the newest limit (0: the daemon's default).
func (c *Client) Audit(ctx context.Context, since uint64, fromSeq bool, limit int) ([]api.AuditRecord, error) {
	q := fmt.Sprintf("/audit?limit=%d", limit)
	if limit == 0 {
		q = "/audit?"
	}
	if fromSeq {
		q += fmt.Sprintf("&since=%d", since)
	}
	var out []api.AuditRecord
	return out, c.do(ctx, "GET", q, nil, &out)
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
