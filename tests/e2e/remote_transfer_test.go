package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// remoteUploadCap is the --max-upload TestRemoteAPI's daemon runs with:
// above an archive or save image of rm1, below what the cap test sends.
const remoteUploadCap = 256 << 20

// stateFiles lists the paths under the state dir but the store and the
// logs (which change as the daemon runs).
func stateFiles(t *testing.T, state string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	filepath.WalkDir(state, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(state, p)
		if d.IsDir() && (rel == "log" || rel == "backups") || strings.HasPrefix(filepath.Base(p), "state.db") {
			return filepath.SkipDir
		}
		out[rel] = true
		return nil
	})
	return out
}

// remoteExportNoScratch: the export is streamed as it is made: no file
// appears under the daemon's state dir while it runs.
func remoteExportNoScratch(t *testing.T, e *Env, r remoteCLI, archive string) {
	t.Helper()
	before := stateFiles(t, e.State)
	var done atomic.Bool
	seen := map[string]bool{}
	go func() {
		defer done.Store(true)
		r.must("export", "rm1", "-o", archive)
	}()
	polls := 0
	for !done.Load() {
		for p := range stateFiles(t, e.State) {
			if !before[p] {
				seen[p] = true
			}
		}
		polls++
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("export: the state dir looked at %d times while it ran", polls)
	if len(seen) != 0 {
		t.Fatalf("files appeared under the daemon's state dir during a remote export: %v", seen)
	}
}

// remoteSave: save writes the image to the client's file (the domain is
// gone there), restore uploads it; save -c keeps it running; a file that
// exists is refused with the domain untouched; a relative host path is
// refused before anything is asked.
func remoteSave(t *testing.T, e *Env, r remoteCLI) {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "rm1.save")
	res := r.run("save", "rm1", img)
	if res.Code != 0 || !strings.Contains(res.Stderr, "MiB/s") {
		t.Fatalf("save over the remote: %+v\n%s", res, tail(e.DaemonLog(), 3000))
	}
	if fi, err := os.Stat(img); err != nil || fi.Size() < 1<<20 {
		t.Fatalf("the save image on the client: %v %v", fi, err)
	}
	if len(e.List()) != 0 {
		t.Fatalf("rm1 still runs after a save: %+v", e.List())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".ringfence-recv-*")); len(left) != 0 {
		t.Fatalf("temporary files left beside the image: %v", left)
	}
	r.must("restore", img)
	if d := e.Domain("rm1"); d.PID == 0 {
		t.Fatalf("rm1 restored over the remote is not running: %+v", d)
	}
	pid := e.Domain("rm1").PID
	r.refused("exists", "save", "rm1", img)
	r.must("save", "-c", "rm1", filepath.Join(dir, "rm1.ckpt"))
	if d := e.Domain("rm1"); d.PID != pid {
		t.Fatalf("rm1 after a refused save and a save -c: %+v, want it running as pid %d", d, pid)
	}
	r.refused("give it absolute", "cd-insert", "rm1", "hdc", "some.iso")
	r.refused("--async needs the daemon", "save", "--async", "rm1", filepath.Join(dir, "x.save"))
}

// remoteUploadCapped: an upload over the daemon's cap is 413 with the
// limit in the message, whether its Content-Length says so (refused
// before the body) or it is sent chunked (cut at the cap); nothing is
// left under the state dir and no operation or domain is made.
func remoteUploadCapped(t *testing.T, e *Env, apiAddr, token string) {
	t.Helper()
	before := stateFiles(t, e.State)
	c := peerHTTP(t, e.Netns, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	c.Timeout = 2 * time.Minute
	over := int64(remoteUploadCap + 1<<20)
	for _, chunked := range []bool{false, true} {
		body := io.LimitReader(zeros{}, over)
		req, _ := http.NewRequest("POST", "https://"+apiAddr+"/1.0/import/archive?name=capped", body)
		req.Header.Set("Authorization", "Bearer "+token)
		if !chunked {
			req.ContentLength = over
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("upload over the cap (chunked %v): %v", chunked, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprint(remoteUploadCap); resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), want) {
			t.Errorf("upload over the cap (chunked %v): %d %s, want 413 naming %s", chunked, resp.StatusCode, b, want)
		}
	}
	for p := range stateFiles(t, e.State) {
		if !before[p] {
			t.Errorf("a refused upload left %s under the state dir", p)
		}
	}
	if ops := e.MustRF("operation", "list"); strings.Contains(ops, "capped") {
		t.Errorf("a refused upload made an operation:\n%s", ops)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
