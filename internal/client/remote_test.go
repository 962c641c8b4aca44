package client

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRemotePinned: a remote client trusts exactly the pinned
// certificate, sends its token on every request and on the console's
// upgrade, which works over TLS.
func TestRemotePinned(t *testing.T) {
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer rf_t_secret" {
			w.WriteHeader(401)
			io.WriteString(w, `{"error":"invalid API token","class":"unauthorized"}`)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/console") {
			conn, rw, _ := w.(http.Hijacker).Hijack()
			rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: ringfence-console\r\nConnection: Upgrade\r\n\r\nboot line\n")
			rw.Flush()
			conn.Close()
			return
		}
		io.WriteString(w, `[{"name":"t","role":"admin","created":"2026-01-01T00:00:00Z"}]`)
	}))
	ts.EnableHTTP2 = false
	ts.StartTLS()
	defer ts.Close()
	cert, err := FetchCertificate(context.Background(), ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	fp := Fingerprint(cert)
	c, err := NewRemote(ts.URL, "rf_t_secret", fp)
	if err != nil {
		t.Fatal(err)
	}
	if ts, err := c.Tokens(context.Background()); err != nil || len(ts) != 1 {
		t.Fatalf("tokens %v %v", ts, err)
	}
	conn, err := c.Console(context.Background(), "g1", true)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(conn)
	if string(b) != "boot line\n" {
		t.Fatalf("console read %q", b)
	}
	bad, _ := NewRemote(ts.URL, "rf_t_secret", strings.Repeat("ab", 32))
	if _, err := bad.Tokens(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate changed") {
		t.Fatalf("another pin: %v", err)
	}
	wrong, _ := NewRemote(ts.URL, "rf_t_other", fp)
	if _, err := wrong.Tokens(context.Background()); err == nil || !strings.Contains(err.Error(), "invalid API token") {
		t.Fatalf("another token: %v", err)
	}
	for _, u := range []string{"http://h:1", "https://h", "https://h:1/x", "h:1"} {
		if _, err := NewRemote(u, "t", fp); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
	if _, err := NewRemote(ts.URL, "a\r\nX: y", fp); err == nil {
		t.Error("a token with CR LF accepted")
	}
}
