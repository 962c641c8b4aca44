package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// An image file may name other files QEMU then opens itself, as root,
// before it drops privileges: a qcow2 or qcow backing file or external data
// file, a QED backing file, a VHD parent. Whoever writes an image's first
// sectors (a guest, on a raw disk later called qcow2; a peer, through a
// disk copy) chooses those names. So the disk policy reads them from the
// headers itself (it never asks qemu-img, which would open them, network
// ones included) and judges each like a disk of its own.

// ChainLink is one file an image refers to.
type ChainLink struct {
	Path string
	// Data is an external data file (written with the image), not a
	// read-only backing file.
	Data bool
}

// maxChain bounds a backing chain (a loop, or a very deep one, is refused).
const maxChain = 16

// BackingChain returns the files an image at path refers to, transitively,
// reading headers only. format is the one the domain gives ("" = raw).
func BackingChain(path, format string) ([]ChainLink, error) {
	var out []ChainLink
	seen := map[string]bool{}
	cur, curFormat := path, format
	for depth := 0; ; depth++ {
		if depth > maxChain {
			return nil, fmt.Errorf("%s: its backing chain is deeper than %d files (or loops)", path, maxChain)
		}
		backing, data, err := refs(cur, curFormat)
		if err != nil {
			return nil, err
		}
		for _, d := range data {
			out = append(out, ChainLink{Path: d, Data: true})
		}
		if backing == "" {
			return out, nil
		}
		if seen[backing] {
			return nil, fmt.Errorf("%s: its backing chain loops at %s", path, backing)
		}
		seen[backing] = true
		out = append(out, ChainLink{Path: backing})
		// A backing file's format is probed, as QEMU does without a
		// backing format: whatever its header says.
		cur, curFormat = backing, "probe"
	}
}

// refs reads one image's backing file and data files from its header.
func refs(path, format string) (string, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	hdr := make([]byte, 4096)
	n, err := io.ReadFull(f, hdr)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		if errors.Is(err, io.EOF) {
			return "", nil, nil
		}
		return "", nil, err
	}
	hdr = hdr[:n]
	name := func(raw string) (string, error) { return backingPath(path, raw) }
	switch {
	case len(hdr) >= 20 && bytes.Equal(hdr[:4], []byte{'Q', 'F', 'I', 0xfb}):
		if format != "qcow2" && format != "qcow" && format != "probe" {
			return "", nil, nil // a raw disk that happens to start like qcow2: QEMU reads it raw
		}
		return qcowRefs(f, hdr, name)
	case len(hdr) >= 64 && bytes.Equal(hdr[:4], []byte{'Q', 'E', 'D', 0}):
		if format != "qed" && format != "probe" {
			return "", nil, nil
		}
		le := binary.LittleEndian
		if le.Uint64(hdr[16:])&1 == 0 { // QED_F_BACKING_FILE
			return "", nil, nil
		}
		raw, err := readAt(f, int64(le.Uint32(hdr[56:])), le.Uint32(hdr[60:]))
		if err != nil {
			return "", nil, err
		}
		b, err := name(raw)
		return b, nil, err
	case format == "vhd":
		if fi, err := f.Stat(); err == nil && fi.Size() >= 512 {
			foot, err := readAt(f, fi.Size()-512, 512)
			if err == nil && strings.HasPrefix(foot, "conectix") && binary.BigEndian.Uint32([]byte(foot[60:64])) == 4 {
				return "", nil, fmt.Errorf("%s is a VHD differencing disk (it names a parent): convert it to a plain image first (qemu-img convert)", path)
			}
		}
	}
	return "", nil, nil
}

// qcowRefs reads a qcow/qcow2 header: the backing file name, and for
// qcow2 v3 the external data file extension.
func qcowRefs(f *os.File, hdr []byte, name func(string) (string, error)) (string, []string, error) {
	be := binary.BigEndian
	version := be.Uint32(hdr[4:])
	var backing string
	if off, size := be.Uint64(hdr[8:]), be.Uint32(hdr[16:]); off != 0 && size != 0 {
		raw, err := readAt(f, int64(off), size)
		if err != nil {
			return "", nil, err
		}
		if backing, err = name(raw); err != nil {
			return "", nil, err
		}
	}
	var data []string
	if version >= 2 {
		extStart := uint32(72)
		if version >= 3 && len(hdr) >= 104 {
			extStart = be.Uint32(hdr[100:])
		}
		for off := int(extStart); off+8 <= len(hdr); {
			typ, ln := be.Uint32(hdr[off:]), int(be.Uint32(hdr[off+4:]))
			if typ == 0 || off+8+ln > len(hdr) {
				break
			}
			if typ == 0x44415441 { // external data file name
				d, err := name(string(hdr[off+8 : off+8+ln]))
				if err != nil {
					return "", nil, err
				}
				data = append(data, d)
			}
			off += 8 + (ln+7)/8*8
		}
	}
	return backing, data, nil
}

func readAt(f *os.File, off int64, size uint32) (string, error) {
	if size > 4096 {
		return "", fmt.Errorf("%s: a file name of %d bytes in its header", f.Name(), size)
	}
	b := make([]byte, size)
	if _, err := f.ReadAt(b, off); err != nil {
		return "", fmt.Errorf("%s: reading its header: %w", f.Name(), err)
	}
	return string(b), nil
}

// backingPath turns a name from an image header into a path: absolute,
// or relative to the image's directory (as QEMU resolves it). Protocol
// names (nbd:, http:, json:{...}) are refused: QEMU would connect to them.
func backingPath(image, raw string) (string, error) {
	if strings.ContainsAny(raw, "\x00\n") {
		return "", fmt.Errorf("%s names a backing file with a control character", image)
	}
	if i := strings.IndexByte(raw, ':'); i > 0 && !strings.Contains(raw[:i], "/") {
		return "", fmt.Errorf("%s names %q as its backing or data file: a network or protocol target, which this host does not open for an image", image, raw)
	}
	if !filepath.IsAbs(raw) {
		raw = filepath.Join(filepath.Dir(image), raw)
	}
	return filepath.Clean(raw), nil
}
