package daemon

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

// onlyReader hides a body's length (a chunked upload).
type onlyReader struct{ io.Reader }

// receive takes an upload into an unnamed scratch file: one over the cap
// is refused with 413 naming it, whether its Content-Length says so or
// it is cut at the cap; nothing is ever left in STATE/imports.
func TestReceive(t *testing.T) {
	state := t.TempDir()
	s := &Server{cfg: Config{StateDir: state, MaxUpload: 1000}}
	for _, c := range []struct {
		what    string
		body    io.Reader
		want    string // "" = received
		wantErr error
	}{
		{"within the cap", strings.NewReader(strings.Repeat("a", 1000)), "", nil},
		{"over, said by its length", strings.NewReader(strings.Repeat("a", 1001)), "upload limit of 1000 bytes", api.ErrTooLarge},
		{"over, sent chunked", onlyReader{strings.NewReader(strings.Repeat("a", 5000))}, "upload limit of 1000 bytes", api.ErrTooLarge},
		{"empty", strings.NewReader(""), "", nil},
	} {
		r := httptest.NewRequest("POST", "/1.0/import/archive", c.body)
		w := httptest.NewRecorder()
		f, err := s.receive(w, r, "archive")
		if c.want != "" {
			if err == nil || !errors.Is(err, c.wantErr) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: %v, want %v saying %q", c.what, err, c.wantErr, c.want)
			}
		} else if err != nil {
			t.Errorf("%s: %v", c.what, err)
		} else {
			b, _ := io.ReadAll(f)
			f.Close()
			if n, _ := io.Copy(io.Discard, c.body); n != 0 || len(b) == 0 && c.what != "empty" {
				t.Errorf("%s: received %d bytes", c.what, len(b))
			}
		}
		if ents, _ := os.ReadDir(filepath.Join(state, "imports")); len(ents) != 0 {
			t.Errorf("%s: left %v in STATE/imports", c.what, ents)
		}
	}
	if code, _ := api.StatusOf(api.Errorf(api.ErrTooLarge, "x")); code != http.StatusRequestEntityTooLarge {
		t.Errorf("too large is %d", code)
	}
}
