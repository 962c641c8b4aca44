package daemon

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/audit"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/store/memstore"
)

// Every call of a mutating route is recorded, refused ones too, with who
// made it and how it ended; reads are not. GET /1.0 is open to every
// user role.
func TestAuditAndAPIInfo(t *testing.T) {
	l, err := audit.Open(context.Background(), memstore.New(), 0)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{audit: l, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	mux := s.handler(auth.UserRoles(), nil)
	root := auth.Principal{Kind: auth.Local, Name: "root", Role: auth.Admin, Remote: "unix"}
	if w := call(mux, root, "POST", api.Version+"/pools", `{"bogus":1}`); w.Code != http.StatusBadRequest {
		t.Fatalf("bad body: %d", w.Code)
	}
	if w := call(mux, as(auth.TenantUser), "DELETE", api.Version+"/pools/p1", ""); w.Code != http.StatusForbidden {
		t.Fatalf("tenant deleting a pool: %d", w.Code)
	}
	if w := call(mux, as(auth.Auditor), "GET", api.Version+"/audit", ""); w.Code != http.StatusOK {
		t.Fatalf("GET /audit: %d %s", w.Code, w.Body)
	}
	recs, _ := l.Since(context.Background(), 0, 0)
	if len(recs) != 2 {
		t.Fatalf("records: %+v", recs)
	}
	if r := recs[0]; r.Principal != "root" || r.Kind != "local" || r.Role != "admin" || r.Remote != "unix" ||
		r.Method != "POST" || r.Path != "/1.0/pools" || r.Status != 400 || r.Class != "invalid" {
		t.Errorf("record 1: %+v", r)
	}
	if r := recs[1]; r.Role != "tenant-user" || r.Tenant != "acme" || r.Status != 403 || r.Class != "forbidden" || r.Path != "/1.0/pools/p1" {
		t.Errorf("record 2: %+v", r)
	}
	w := call(mux, as(auth.Admin), "GET", api.Version+"/audit?since=1", "")
	var got []api.AuditRecord
	if json.Unmarshal(w.Body.Bytes(), &got); len(got) != 1 || got[0].Seq != 2 {
		t.Errorf("GET /audit?since=1: %s", w.Body)
	}
	if w := call(mux, as(auth.Admin), "GET", api.Version+"/audit?limit=x", ""); w.Code != http.StatusBadRequest {
		t.Errorf("a bad limit: %d", w.Code)
	}
	for _, role := range auth.UserRoles() {
		w := call(mux, as(role), "GET", api.Version, "")
		var info api.APIInfo
		if json.Unmarshal(w.Body.Bytes(), &info); w.Code != 200 || info.APIVersion != "1.0" || len(info.Extensions) == 0 {
			t.Errorf("GET /1.0 as %s: %d %s", role, w.Code, w.Body)
		}
	}
}
