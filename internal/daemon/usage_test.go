package daemon

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
)

func TestUsageQuery(t *testing.T) {
	now := time.Date(2026, 12, 15, 10, 0, 0, 0, time.UTC)
	admin := auth.Principal{Name: "root", Role: auth.Admin}
	acme := auth.Principal{Name: "acme-ops", Role: auth.TenantAdmin, Tenant: "acme"}
	for _, tc := range []struct {
		name    string
		q       string
		p       auth.Principal
		tenant  *string // nil: any
		class   error   // nil: accepted
		fromDay int
	}{
		{"default this month", "", admin, nil, nil, 1},
		{"admin asks a tenant", "tenant=acme", admin, strp("acme"), nil, 1},
		{"admin asks the host's own", "tenant=", admin, strp(""), nil, 1},
		{"a tenant is held to its own", "", acme, strp("acme"), nil, 1},
		{"a tenant names itself", "tenant=acme", acme, strp("acme"), nil, 1},
		{"a tenant asks another", "tenant=globex", acme, nil, api.ErrForbidden, 0},
		{"a from", "from=2026-12-10T00:00:00Z&by=day", admin, nil, nil, 10},
		{"bad time", "from=yesterday", admin, nil, api.ErrInvalid, 0},
		{"to before from", "from=2026-12-10T00:00:00Z&to=2026-12-09T00:00:00Z", admin, nil, api.ErrInvalid, 0},
		{"bad period", "by=week", admin, nil, api.ErrInvalid, 0},
		{"bad limit", "limit=0", admin, nil, api.ErrInvalid, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.q)
			f, err := usageQuery(q, tc.p, now)
			if tc.class != nil {
				if !errors.Is(err, tc.class) {
					t.Fatalf("err %v, want %v", err, tc.class)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (f.Tenant == nil) != (tc.tenant == nil) || f.Tenant != nil && *f.Tenant != *tc.tenant {
				t.Fatalf("tenant %v, want %v", f.Tenant, tc.tenant)
			}
			if from := time.Unix(0, f.FromNs).UTC(); from.Day() != tc.fromDay || f.ToNs != now.UnixNano() {
				t.Fatalf("range %v..%v", from, time.Unix(0, f.ToNs).UTC())
			}
		})
	}
}

func strp(s string) *string { return &s }

func TestLoadPrices(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, file string
		class      error
	}{
		{"good", "currency = \"EUR\"\nvcpu_hour = 0.012\ntransfer_gb = 1\n", nil},
		{"unknown key", "gpu_hour = 1\n", api.ErrInvalid},
		{"negative", "vcpu_hour = -1\n", api.ErrInvalid},
		{"a list", "vcpu_hour = [ 1 ]\n", api.ErrInvalid},
		{"missing", "", api.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".conf")
			if tc.file != "" {
				os.WriteFile(path, []byte(tc.file), 0o644)
			}
			p, err := loadPrices(path)
			if tc.class == nil && (err != nil || p.VCPUHour != 0.012 || p.TransferGB != 1 || p.Currency != "EUR") {
				t.Fatalf("prices %+v, err %v", p, err)
			}
			if tc.class != nil && !errors.Is(err, tc.class) {
				t.Fatalf("err %v, want %v", err, tc.class)
			}
		})
	}
}
