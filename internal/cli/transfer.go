package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/term"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/client"
	"github.com/ringfence/ringfence/internal/saveimage"
)

// Over a remote, files whose content the user supplies or receives (an
// export archive, a save image) are this machine's files: streamed from
// the daemon (export, save) or uploaded to it (import, restore). Over
// the local socket they are the daemon's host's, as they always were.

// clientFile is a file received from a remote, written under a
// temporary name beside its path (O_EXCL) and linked into place once
// whole and synced: never replacing anything, never seen half-written.
type clientFile struct {
	path string
	*os.File
}

func newClientFile(path string) (*clientFile, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("%s exists: pick a new file (nothing is ever overwritten)", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".ringfence-recv-*")
	if err != nil {
		return nil, err
	}
	return &clientFile{path: path, File: f}, nil
}

// place syncs the file and links it into place.
func (f *clientFile) place() error {
	if err := f.Sync(); err != nil {
		return err
	}
	if err := os.Link(f.Name(), f.path); err != nil {
		return fmt.Errorf("placing %s: %w", f.path, err)
	}
	return nil
}

// close drops the temporary name (the placed one stays).
func (f *clientFile) close() {
	f.File.Close()
	os.Remove(f.Name())
}

// rateMeter draws bytes moved and the rate on a terminal, redrawn at
// most 5 times a second; done ends the line.
type rateMeter struct {
	w     io.Writer
	what  string
	t0    time.Time
	last  time.Time
	n     int64
	shown bool
}

func newRateMeter(e *env, what string) *rateMeter {
	m := &rateMeter{what: what, t0: time.Now()}
	if f, ok := e.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		m.w = e.stderr
	}
	return m
}

func (m *rateMeter) Write(p []byte) (int, error) {
	m.n += int64(len(p))
	if m.w != nil && time.Since(m.last) >= 200*time.Millisecond {
		m.last, m.shown = time.Now(), true
		fmt.Fprintf(m.w, "\r%s: %s (%s)    ", m.what, size(m.n), m.rate())
	}
	return len(p), nil
}

func (m *rateMeter) rate() string {
	return fmt.Sprintf("%.1f MiB/s", float64(m.n)/(1<<20)/max(time.Since(m.t0).Seconds(), 1e-3))
}

func (m *rateMeter) done() {
	if m.shown {
		fmt.Fprintln(m.w)
	}
}

// exportRemote writes a remote domain's archive to out here, as the
// remote makes it.
func exportRemote(e *env, name, out string, asJSON bool) error {
	start := time.Now()
	f, err := newClientFile(out)
	if err != nil {
		return err
	}
	defer f.close()
	meter := newRateMeter(e, "receiving the archive")
	n, err := e.client().ExportTo(e.waitCtx(), name, io.MultiWriter(f, meter))
	meter.done()
	if err == nil {
		err = f.place()
	}
	if err != nil {
		return err
	}
	res := api.ExportResult{Path: f.path, Bytes: n, Ms: time.Since(start).Milliseconds()}
	if asJSON {
		return printJSON(e.stdout, res)
	}
	fmt.Fprintf(e.stderr, "Exported %s to %s: %s in %.1f s (%s)\n", name, f.path, size(n), float64(res.Ms)/1000, meter.rate())
	return nil
}

// upload opens a local file to send.
func upload(file string) (client.Upload, func(), error) {
	f, err := os.Open(file)
	if err != nil {
		return client.Upload{}, nil, err
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return client.Upload{}, nil, fmt.Errorf("%s is not a regular file", file)
	}
	return client.Upload{R: f, Size: fi.Size()}, func() { f.Close() }, nil
}

// importRemote uploads a local archive to the remote and imports it there
// (req.Dir, if given, is a directory on the remote's host).
func importRemote(e *env, c context.Context, file string, req api.ImportRequest, asJSON bool) error {
	up, closeFile, err := upload(file)
	if err != nil {
		return err
	}
	defer closeFile()
	bar, end := jobBar(e)
	d, err := e.client().ImportFrom(c, up, req, bar)
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

// saveRemote saves a remote domain into file here: the image streams
// in, is synced, checked whole (saveimage.Check) and placed; only then
// is the remote told to end the domain (without -c). Any failure leaves
// no file and the domain running there.
func saveRemote(e *env, name, file string, checkpoint bool) error {
	f, err := newClientFile(file)
	if err != nil {
		return err
	}
	defer f.close()
	meter := newRateMeter(e, "receiving the save image")
	tok, n, err := e.client().SaveImage(e.waitCtx(), name, checkpoint, io.MultiWriter(f, meter))
	meter.done()
	if err != nil {
		return err
	}
	if _, _, _, err := saveimage.Check(f.File, n, f.path); err != nil {
		return fmt.Errorf("the image received is damaged (the domain runs on there): %w", err)
	}
	if err := f.place(); err != nil {
		return err
	}
	if !checkpoint {
		if err := e.client().ConfirmSave(ctx(), name, tok); err != nil {
			os.Remove(f.path)
			return fmt.Errorf("the remote did not end %s after the save (it runs on; %s removed): %w", name, f.path, err)
		}
	}
	fmt.Fprintf(e.stderr, "Saved %s to %s (%s in %.2f s, %s)\n", name, f.path, size(n), time.Since(meter.t0).Seconds(), meter.rate())
	return nil
}

// restoreRemote uploads a local save image and restores it there.
func restoreRemote(e *env, c context.Context, file string, paused bool) (api.Domain, error) {
	up, closeFile, err := upload(file)
	if err != nil {
		return api.Domain{}, err
	}
	defer closeFile()
	return e.client().RestoreFrom(c, up, paused)
}
