package storage

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

func TestNoSpace(t *testing.T) {
	dir := t.TempDir()
	full := fmt.Errorf("writing x: %w", &wrapped{syscall.ENOSPC})
	err := NoSpace("the save file", dir+"/x.save", full)
	if !errors.Is(err, api.ErrInsufficient) || !strings.Contains(err.Error(), "no space left on ") ||
		!strings.Contains(err.Error(), " at ") || !strings.Contains(err.Error(), "the filesystem of the save file ("+dir+"/x.save)") {
		t.Fatalf("NoSpace: %v", err)
	}
	if err := NoSpace("the save file", dir+"/x.save", io.ErrUnexpectedEOF); err != io.ErrUnexpectedEOF {
		t.Fatalf("another error is changed: %v", err)
	}
	if err := NoSpace("the save file", dir+"/x.save", nil); err != nil {
		t.Fatalf("nil: %v", err)
	}
	if err := CheckRoom("the run dir", dir, 1<<62); err == nil || !strings.Contains(err.Error(), "KiB needed") {
		t.Fatalf("CheckRoom with too little room: %v", err)
	}
	if err := CheckRoom("the run dir", dir, 1); err != nil {
		t.Fatalf("CheckRoom: %v", err)
	}
}

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "op: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }
