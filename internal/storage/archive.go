package storage

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/safefile"
)

// An export archive is a zstd-compressed tar: domain.cfg (the domain
// file), disks/<guest>.<format> for every disk image, and manifest.json
// last, with the spec and the size and SHA-256 of every other member. The
// manifest goes last so the disks can be streamed without a first hashing
// pass; an import therefore unpacks into a scratch directory, checks
// everything against the manifest, and only then moves files into place.

// ArchiveFormat names this layout in the manifest.
const ArchiveFormat = "ringfence-export/1"

// Manifest is the archive's table of contents.
type Manifest struct {
	Format  string         `json:"format"`
	Created time.Time      `json:"created"`
	Host    string         `json:"host"`
	Spec    api.DomainSpec `json:"spec"` // disk targets are member names
	Members []Member       `json:"members"`
}

// Member is one file of the archive.
type Member struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ArchiveWriter writes an archive to a new file beside FILE (see
// internal/safefile) and renames it onto FILE on Close, or streams it to
// a writer (StreamArchive: a remote client's download).
type ArchiveWriter struct {
	f       *safefile.File // nil when streamed
	zw      *zstd.Encoder
	tw      *tar.Writer
	members []Member
	// Progress, when set, is called with bytes of input written so far.
	Progress func(done int64)
	done     int64
}

// CreateArchive starts an archive at path (which must not exist).
func CreateArchive(path string) (*ArchiveWriter, error) {
	if !filepath.IsAbs(path) {
		return nil, api.Errorf(api.ErrInvalid, "archive %q must be an absolute path", path)
	}
	if _, err := os.Lstat(path); err == nil {
		return nil, api.Errorf(api.ErrConflict, "%s already exists; remove it or pick another file", path)
	}
	f, err := safefile.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating the archive: %w", err)
	}
	zw, err := zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		f.Abort()
		return nil, err
	}
	return &ArchiveWriter{f: f, zw: zw, tw: tar.NewWriter(zw)}, nil
}

// StreamArchive starts an archive written to w as it is made: nothing
// is kept on this host. A failed archive is cut short, which the reader
// sees (zstd's frame and the manifest are missing).
func StreamArchive(w io.Writer) (*ArchiveWriter, error) {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		return nil, err
	}
	return &ArchiveWriter{zw: zw, tw: tar.NewWriter(zw)}, nil
}

// Add writes one member of size bytes from r.
func (a *ArchiveWriter) Add(name string, size int64, r io.Reader) error {
	if err := a.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: time.Now(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(a.tw, io.TeeReader(r, &progressWriter{h: h, a: a}))
	if err != nil {
		return fmt.Errorf("archiving %s: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("archiving %s: read %d bytes, expected %d", name, n, size)
	}
	a.members = append(a.members, Member{Name: name, Size: size, SHA256: hex.EncodeToString(h.Sum(nil))})
	return nil
}

type progressWriter struct {
	h io.Writer
	a *ArchiveWriter
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.h.Write(b)
	p.a.done += int64(len(b))
	if p.a.Progress != nil {
		p.a.Progress(p.a.done)
	}
	return len(b), nil
}

// Close writes the manifest, flushes, syncs and renames the file onto
// FILE (refused if something appeared there meanwhile).
func (a *ArchiveWriter) Close(m Manifest) error {
	m.Format, m.Members = ArchiveFormat, a.members
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := a.tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o600, Size: int64(len(b)), ModTime: time.Now(), Typeflag: tar.TypeReg}); err != nil {
		a.Abort()
		return err
	}
	if _, err := a.tw.Write(b); err != nil {
		a.Abort()
		return err
	}
	for _, step := range []func() error{a.tw.Close, a.zw.Close} {
		if err := step(); err != nil {
			a.Abort()
			return err
		}
	}
	if a.f == nil {
		return nil
	}
	return a.f.CommitNoReplace()
}

// Abort removes the partial archive (a streamed one is left cut short:
// its zstd frame is not ended).
func (a *ArchiveWriter) Abort() {
	if a.f == nil {
		return
	}
	a.zw.Close()
	a.f.Abort()
}

// sparseCopy writes r to f leaving holes where r has whole zero blocks
// (disks are archived flat; a 1 GiB disk with 300 MiB used comes back
// taking 300 MiB), and returns the bytes copied.
func sparseCopy(f *os.File, r io.Reader) (int64, error) {
	const block = 64 << 10
	buf := make([]byte, block)
	var n int64
	for {
		// Fill a block; only io.EOF ends it cleanly (a truncated archive's
		// io.ErrUnexpectedEOF is an error, not an end).
		k := 0
		var err error
		for k < len(buf) && err == nil {
			var m int
			m, err = r.Read(buf[k:])
			k += m
		}
		if k > 0 {
			chunk := buf[:k]
			if isZero(chunk) {
				if _, serr := f.Seek(int64(k), io.SeekCurrent); serr != nil {
					return n, &writeError{serr}
				}
			} else if _, werr := f.Write(chunk); werr != nil {
				return n, &writeError{werr}
			}
			n += int64(k)
		}
		if err == io.EOF {
			// A trailing hole still has to count in the file's length.
			if terr := f.Truncate(n); terr != nil {
				return n, &writeError{terr}
			}
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// writeError marks a failure to write the unpacked copy (a full disk),
// as opposed to a damaged archive.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// Unpack reads the archive at path into dir (a fresh scratch directory)
// and checks it: every member named in the manifest present, with its
// size and SHA-256, nothing else, zstd's own checksums intact. It stops
// part-way once ctx is done. On any error dir may hold partial files:
// the caller removes it.
func Unpack(ctx context.Context, path, dir string, progress func(done int64)) (Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return Manifest{}, api.Errorf(api.ErrInvalid, "opening the archive: %v", err)
	}
	defer f.Close()
	return UnpackFrom(ctx, f, path, dir, progress)
}

// UnpackFrom is Unpack of the archive read from f (label names it).
func UnpackFrom(ctx context.Context, f io.Reader, path, dir string, progress func(done int64)) (Manifest, error) {
	var m Manifest
	f = ctxReader{ctx, f}
	zr, err := zstd.NewReader(f)
	if err != nil {
		return m, api.Errorf(api.ErrInvalid, "%s is not a Ringfence export (zstd): %v", path, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	got := map[string]Member{}
	var done int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, damaged(ctx, path, "", err)
		}
		name := filepath.Clean(h.Name)
		if h.Typeflag != tar.TypeReg || filepath.IsAbs(name) || strings.HasPrefix(name, "..") {
			return m, api.Errorf(api.ErrInvalid, "%s holds an unexpected member %q", path, h.Name)
		}
		if name == "manifest.json" {
			b, err := io.ReadAll(io.LimitReader(tr, 16<<20))
			if err != nil {
				return m, api.Errorf(api.ErrInvalid, "%s is damaged or truncated: %v", path, err)
			}
			if err := json.Unmarshal(b, &m); err != nil || m.Format != ArchiveFormat {
				return m, api.Errorf(api.ErrInvalid, "%s has no readable %s manifest", path, ArchiveFormat)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o700); err != nil {
			return m, err
		}
		out, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return m, err
		}
		hs := sha256.New()
		n, err := sparseCopy(out, io.TeeReader(tr, hs))
		if cerr := out.Close(); err == nil && cerr != nil {
			err = &writeError{cerr}
		}
		done += n
		if progress != nil {
			progress(done)
		}
		var we *writeError
		if errors.As(err, &we) {
			// Our side, not the archive's: say where and why.
			return m, api.Errorf(api.ErrInsufficient, "writing %s into %s: %v; free space there or import into another --dir", name, dir, we.err)
		}
		if err != nil {
			return m, damaged(ctx, path, name, err)
		}
		got[name] = Member{Name: name, Size: n, SHA256: hex.EncodeToString(hs.Sum(nil))}
	}
	if m.Format == "" {
		return m, api.Errorf(api.ErrInvalid, "%s is truncated: its manifest is missing", path)
	}
	if len(got) != len(m.Members) {
		return m, api.Errorf(api.ErrInvalid, "%s holds %d files, its manifest lists %d", path, len(got), len(m.Members))
	}
	for _, want := range m.Members {
		g, ok := got[filepath.Clean(want.Name)]
		if !ok {
			return m, api.Errorf(api.ErrInvalid, "%s lacks %s", path, want.Name)
		}
		if g.Size != want.Size || g.SHA256 != want.SHA256 {
			return m, api.Errorf(api.ErrInvalid, "%s is corrupt: %s does not match its checksum", path, want.Name)
		}
	}
	return m, nil
}

// damaged is a read of the archive that failed: cancelled (ctx), or a
// damaged or truncated archive.
func damaged(ctx context.Context, path, member string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("reading %s: %w", path, ctx.Err())
	}
	if member != "" {
		return api.Errorf(api.ErrInvalid, "%s is damaged or truncated (in %s): %v", path, member, err)
	}
	return api.Errorf(api.ErrInvalid, "%s is damaged or truncated: %v", path, err)
}

// ctxReader stops a read once ctx is done (a cancelled import or export).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

// CtxReader is r that fails once ctx is done.
func CtxReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
