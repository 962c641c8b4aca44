package storage

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// A qcow2 image flattened into a scratch file (no name in its dir) reads
// back as the raw bytes the guest wrote; the dir stays empty.
func TestConvertToRawFile(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "src.raw")
	want := bytes.Repeat([]byte("ringfence"), 1<<16)
	want = append(want, make([]byte, 2<<20-len(want))...)
	if err := os.WriteFile(raw, want, 0o600); err != nil {
		t.Fatal(err)
	}
	q := filepath.Join(dir, "src.qcow2")
	if err := qemuImg("convert", "-f", "raw", "-O", "qcow2", raw, q); err != nil {
		t.Fatal(err)
	}
	scratch := t.TempDir()
	f, err := ScratchFile(scratch)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
		t.Fatalf("a scratch file has a name: %v", ents)
	}
	if err := ConvertToRawFile(context.Background(), q, "qcow2", int64(len(want)), f); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<30))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("flattened: %d bytes, %v; want the %d written", len(got), err, len(want))
	}
}
