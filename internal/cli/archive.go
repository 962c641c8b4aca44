package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// Export and import over a remote: the archive is this machine's file,
// streamed from the daemon (export) or uploaded to it (import).

// exportRemote writes a remote domain's archive to out here. The file
// must not exist: it is written under a temporary name, synced, then
// linked into place (never replacing anything).
func exportRemote(e *env, name, out string, asJSON bool) error {
	start := time.Now()
	out, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("%s exists: export writes a new file", out)
	}
	f, err := os.CreateTemp(filepath.Dir(out), ".export-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	fmt.Fprintf(e.stderr, "Exporting %s (the remote writes the archive, then sends it)...\n", name)
	n, err := e.client().ExportTo(ctx(), name, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(f.Name(), out); err != nil {
		return fmt.Errorf("placing the archive: %w", err)
	}
	res := api.ExportResult{Path: out, Bytes: n, Ms: time.Since(start).Milliseconds()}
	if asJSON {
		return printJSON(e.stdout, res)
	}
	fmt.Fprintf(e.stderr, "Exported %s to %s: %s in %.1f s\n", name, out, size(n), float64(res.Ms)/1000)
	return nil
}

// importRemote uploads a local archive to the remote and imports it there
// (req.Dir, if given, is a directory on the remote's host).
func importRemote(e *env, file string, req api.ImportRequest, asJSON bool) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	bar, end := jobBar(e)
	d, err := e.client().ImportFrom(ctx(), f, req, bar)
	end()
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(e.stdout, d)
	}
	if req.NoStart {
		fmt.Fprintf(e.stderr, "Imported %s: %s\n", d.Spec.Name, d.LastReason)
		return nil
	}
	fmt.Fprintf(e.stderr, "Imported %s (id %d)\n", d.Spec.Name, d.ID)
	return nil
}
