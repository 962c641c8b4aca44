package saveimage

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

func image(t *testing.T, stream []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := Begin(&b, Header{Spec: api.DomainSpec{Name: "g1"}, Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(stream)
	if err := w.End(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// An image written here checks whole; truncated, corrupted or foreign
// ones are refused as invalid, naming what is wrong.
func TestCheck(t *testing.T) {
	good := image(t, bytes.Repeat([]byte("state"), 1000))
	flip := bytes.Clone(good)
	flip[len(flip)/2] ^= 0xff
	for _, c := range []struct {
		what string
		img  []byte
		want string
	}{
		{"whole", good, ""},
		{"truncated", good[:len(good)-10], "trailer"},
		{"cut in the stream", append(bytes.Clone(good[:len(good)/2]), good[len(good)-TrailerLen:]...), "truncated or corrupt"},
		{"a flipped byte", flip, "checksum mismatch"},
		{"foreign", []byte("not a save image at all, just text"), "wrong magic"},
		{"empty", nil, "wrong magic"},
	} {
		hdr, start, end, err := Check(bytes.NewReader(c.img), int64(len(c.img)), "x.save")
		if c.want == "" {
			if err != nil || hdr.Spec.Name != "g1" || hdr.Accel != "tcg" || end-start != 5000 {
				t.Errorf("%s: %+v %d..%d %v", c.what, hdr, start, end, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, api.ErrInvalid) || !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
			t.Errorf("%s: %v, want an invalid-image error saying %q", c.what, err, c.want)
		}
	}
}
