package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
	"github.com/ringfence/ringfence/internal/operations"
)

func opServer(t *testing.T) (*Server, http.Handler) {
	s := &Server{ops: operations.New(context.Background())}
	return s, s.handler([]auth.Role{auth.Admin, auth.Operator, auth.Auditor, auth.TenantAdmin, auth.TenantUser}, nil)
}

func decodeOp(t *testing.T, w *httptest.ResponseRecorder) api.Operation {
	t.Helper()
	var op api.Operation
	if err := json.Unmarshal(w.Body.Bytes(), &op); err != nil {
		t.Fatalf("%d %s: %v", w.Code, w.Body, err)
	}
	return op
}

// A long verb answers 202 with the operation's Location at once; the
// operation runs under the daemon, not the request (a client gone
// changes nothing), as the principal that asked.
func TestOperationStart(t *testing.T) {
	s, h := opServer(t)
	release := make(chan struct{})
	var who auth.Principal
	verb := operation(s, "save", func(ctx context.Context, name string, in api.SaveRequest, progress func(api.JobProgress)) (any, error) {
		<-release
		who = auth.FromContext(ctx)
		progress(api.JobProgress{Phase: "writing", Done: 1})
		return map[string]string{"name": name, "path": in.Path}, ctx.Err()
	})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /1.0/domains/{name}/save", verb)
	reqCtx, hangUp := context.WithCancel(withPrincipal(context.Background(), as(auth.Operator)))
	r := httptest.NewRequest("POST", "/1.0/domains/g1/save", strings.NewReader(`{"path":"/x"}`)).WithContext(reqCtx)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	op := decodeOp(t, w)
	if w.Code != http.StatusAccepted || w.Header().Get("Location") != "/1.0/operations/"+op.ID || op.Status != api.OpRunning || op.Domain != "g1" || op.Owner != "t" {
		t.Fatalf("start: %d %v %+v", w.Code, w.Header(), op)
	}
	hangUp()
	close(release)
	w = call(h, as(auth.Operator), "GET", "/1.0/operations/"+op.ID+"/wait?timeout=5", "")
	if got := decodeOp(t, w); got.Status != api.OpSuccess || string(got.Result) != `{"name":"g1","path":"/x"}` || who.Name != "t" {
		t.Fatalf("after the client hung up: %+v (ran as %v)", got, who)
	}
	bad := httptest.NewRecorder()
	mux.ServeHTTP(bad, httptest.NewRequest("POST", "/1.0/domains/g1/save", strings.NewReader(`{"bogus":1}`)).WithContext(reqCtx))
	if bad.Code != http.StatusBadRequest || len(s.ops.List()) != 1 {
		t.Fatalf("a bad body: %d, %d operations", bad.Code, len(s.ops.List()))
	}
}

// Unknown, forged and other tenants' ids are one 404 that says nothing;
// a malformed id is refused by the guard; a finished operation cannot be
// cancelled (409); a wait times out with the operation still running.
func TestOperationRoutes(t *testing.T) {
	s, h := opServer(t)
	release := make(chan struct{})
	defer close(release)
	run, _ := s.ops.Start(operations.Meta{Kind: "export", Owner: "t"}, func(ctx context.Context, _ func(api.JobProgress)) (any, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, ctx.Err()
	})
	acme, _ := s.ops.Start(operations.Meta{Kind: "save", Owner: "t", Tenant: "acme"}, func(context.Context, func(api.JobProgress)) (any, error) { return "ok", nil })
	s.ops.Wait(context.Background(), acme.ID)
	other := as(auth.TenantUser)
	other.Tenant = "globex"
	for _, c := range []struct {
		p    auth.Principal
		path string
		code int
	}{
		{as(auth.Admin), "/operations/00112233445566778899aabbccddeeff", 404},
		{as(auth.Admin), "/operations/00112233445566778899AABBCCDDEEFF", 400},
		{as(auth.Admin), "/operations/" + run.ID + "x", 400},
		{as(auth.Auditor), "/operations/" + run.ID, 200},
		{as(auth.TenantUser), "/operations/" + run.ID, 404},
		{as(auth.TenantUser), "/operations/" + acme.ID, 200},
		{other, "/operations/" + acme.ID, 404},
		{other, "/operations/" + acme.ID + "/wait", 404},
	} {
		w := call(h, c.p, "GET", api.Version+c.path, "")
		if w.Code != c.code {
			t.Errorf("GET %s as %s: %d %s, want %d", c.path, c.p, w.Code, w.Body, c.code)
		}
		if c.code == 404 && (strings.Contains(w.Body.String(), "acme") || strings.Contains(w.Body.String(), "export")) {
			t.Errorf("a 404 tells: %s", w.Body)
		}
	}
	var l []api.Operation
	json.Unmarshal(call(h, as(auth.TenantUser), "GET", "/1.0/operations", "").Body.Bytes(), &l)
	if len(l) != 1 || l[0].ID != acme.ID {
		t.Errorf("tenant acme lists %+v", l)
	}
	json.Unmarshal(call(h, as(auth.Admin), "GET", "/1.0/operations", "").Body.Bytes(), &l)
	if len(l) != 2 {
		t.Errorf("admin lists %d", len(l))
	}
	t0 := time.Now()
	if got := decodeOp(t, call(h, as(auth.Admin), "GET", "/1.0/operations/"+run.ID+"/wait?timeout=0.1", "")); got.Status != api.OpRunning || time.Since(t0) > 3*time.Second {
		t.Errorf("wait with a timeout: %+v", got)
	}
	if w := call(h, as(auth.Admin), "GET", "/1.0/operations/"+run.ID+"/wait?timeout=x", ""); w.Code != 400 {
		t.Errorf("a bad timeout: %d", w.Code)
	}
	aud := as(auth.Auditor)
	aud.Name = "aud"
	if w := call(h, aud, "DELETE", "/1.0/operations/"+run.ID, ""); w.Code != 403 {
		t.Errorf("an auditor cancels another's operation: %d", w.Code)
	}
	if w := call(h, as(auth.TenantAdmin), "DELETE", "/1.0/operations/"+acme.ID, ""); w.Code != 409 {
		t.Errorf("cancel of a finished operation: %d %s", w.Code, w.Body)
	}
	if w := call(h, as(auth.Admin), "DELETE", "/1.0/operations/"+run.ID, ""); w.Code != 200 {
		t.Errorf("cancel: %d %s", w.Code, w.Body)
	}
	if got, _ := s.ops.Wait(context.Background(), run.ID); got.Status != api.OpCancelled {
		t.Errorf("after cancel: %+v", got)
	}
}
