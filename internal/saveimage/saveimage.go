// Package saveimage is the format of a save image (`ringfence save`): the
// daemon writes it, restore checks it before anything starts, and the
// CLI checks a copy it received over a remote before it tells the daemon
// it may end the guest. One owner of the format, so the three agree.
//
// An image is: Magic, a 4-byte big-endian header length, the JSON header
// (the domain spec travels with its state, as in xl), QEMU's migration
// stream, and a trailer: "RFSAVEND", the stream's length and its SHA-256.
package saveimage

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

const (
	// Magic opens every image.
	Magic        = "RINGFENCE-SAVE-1\n"
	trailerMagic = "RFSAVEND"
	// TrailerLen is the trailer's size.
	TrailerLen = len(trailerMagic) + 8 + sha256.Size
	maxHeader  = 1 << 20
)

// Header is what an image says about its domain.
type Header struct {
	Spec    api.DomainSpec `json:"spec"`
	Accel   string         `json:"accel"`
	SavedAt time.Time      `json:"saved_at"`
	Host    string         `json:"host"`
	// Tenant owned the domain ("" = the host): a restore keeps it.
	Tenant string `json:"tenant,omitempty"`
	// Usage are its running usage totals when it was saved: a restore
	// continues them (internal/usage).
	Usage *api.UsageCounters `json:"usage,omitempty"`
}

// Writer writes one image: Begin writes the header, Write the stream
// (hashed and counted as it goes), End the trailer.
type Writer struct {
	w io.Writer
	h hash.Hash
	n int64
}

// Begin writes hdr to w and returns the writer of the stream.
func Begin(w io.Writer, hdr Header) (*Writer, error) {
	hb, err := json.Marshal(hdr)
	if err != nil {
		return nil, err
	}
	var pre bytes.Buffer
	pre.WriteString(Magic)
	binary.Write(&pre, binary.BigEndian, uint32(len(hb)))
	pre.Write(hb)
	if _, err := w.Write(pre.Bytes()); err != nil {
		return nil, err
	}
	return &Writer{w: w, h: sha256.New()}, nil
}

func (s *Writer) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.h.Write(p[:n])
	s.n += int64(n)
	return n, err
}

// End writes the trailer.
func (s *Writer) End() error {
	var tr bytes.Buffer
	tr.WriteString(trailerMagic)
	binary.Write(&tr, binary.BigEndian, uint64(s.n))
	tr.Write(s.h.Sum(nil))
	_, err := s.w.Write(tr.Bytes())
	return err
}

// Check reads a whole image of size bytes from r (label names it in
// errors) and returns its header and where the stream lies: a truncated,
// corrupt or foreign image is api.ErrInvalid.
func Check(r io.ReaderAt, size int64, label string) (hdr Header, start, end int64, err error) {
	bad := func(format string, a ...any) (Header, int64, int64, error) {
		return hdr, 0, 0, api.Errorf(api.ErrInvalid, "%s is not a usable ringfence save file: %s", label, fmt.Sprintf(format, a...))
	}
	magic := make([]byte, len(Magic)+4)
	if _, err := r.ReadAt(magic, 0); err != nil || string(magic[:len(Magic)]) != Magic {
		return bad("wrong magic (not saved by ringfence, or from an incompatible version)")
	}
	hl := int64(binary.BigEndian.Uint32(magic[len(Magic):]))
	if hl > maxHeader || int64(len(magic))+hl+int64(TrailerLen) > size {
		return bad("truncated header")
	}
	hb := make([]byte, hl)
	if _, err := r.ReadAt(hb, int64(len(magic))); err != nil {
		return bad("truncated header")
	}
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return bad("corrupt header: %v", err)
	}
	start, end = int64(len(magic))+hl, size-int64(TrailerLen)
	tr := make([]byte, TrailerLen)
	if _, err := r.ReadAt(tr, end); err != nil || string(tr[:len(trailerMagic)]) != trailerMagic {
		return bad("no trailer: the file is truncated (was the save interrupted?)")
	}
	if n := int64(binary.BigEndian.Uint64(tr[len(trailerMagic):])); n != end-start {
		return bad("the state is %d bytes, the trailer says %d: truncated or corrupt", end-start, n)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, start, end-start)); err != nil {
		return hdr, 0, 0, err
	}
	if !bytes.Equal(h.Sum(nil), tr[len(trailerMagic)+8:]) {
		return bad("checksum mismatch: the state is corrupt")
	}
	return hdr, start, end, nil
}
