package migration

import (
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// pair is a control channel's two ends: the source's and the destination's.
func pair(t *testing.T) (src, dst *Control) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return NewControl(a), NewControl(b)
}

func TestControlCarriesTheHandshake(t *testing.T) {
	src, dst := pair(t)
	hdr := Header{Spec: api.DomainSpec{Name: "mover"}, Accel: "kvm", Plain: true,
		Storage: []Disk{{ID: "vda", Path: "/d/vda.qcow2", Format: "qcow2", SizeB: 1 << 30}}}
	go src.Send(hdr)
	got, err := dst.ReadHeader(time.Second)
	if err != nil || got.Spec.Name != "mover" || got.Accel != "kvm" || !got.Plain || len(got.Storage) != 1 || got.Storage[0].SizeB != 1<<30 {
		t.Fatalf("header %+v, %v", got, err)
	}
	go dst.Send(Reply{OK: true, Token: "abc"})
	var rep Reply
	if err := src.ReadReply(&rep); err != nil || !rep.OK || rep.Token != "abc" {
		t.Fatalf("reply %+v, %v", rep, err)
	}
	// A reply is read whole each time: no field of the last one stays.
	go dst.Send(Reply{Listening: true})
	if err := src.ReadReply(&rep); err != nil || rep.OK || !rep.Listening {
		t.Fatalf("second reply %+v, %v", rep, err)
	}
}

func TestBadHeaderIsRefusedWithItsClass(t *testing.T) {
	src, dst := pair(t)
	go io.WriteString(src, "not json\n")
	done := make(chan error, 1)
	go func() { _, err := dst.ReadHeader(time.Second); done <- err }()
	var rep Reply
	if err := src.ReadReply(&rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.Error, "bad migration header") || rep.Class == "" {
		t.Fatalf("refusal %+v", rep)
	}
	if err := <-done; err == nil {
		t.Fatal("a bad header read as a header")
	}
}

func TestHeaderIsBoundedInSizeAndTime(t *testing.T) {
	src, dst := pair(t)
	go io.WriteString(src, "\""+strings.Repeat("x", MaxMessage+10)+"\"\n")
	if _, err := dst.ReadHeader(5 * time.Second); err == nil || !strings.Contains(err.Error(), "over") {
		t.Fatalf("an oversized header: %v", err)
	}
	_, dst = pair(t)
	t0 := time.Now()
	if _, err := dst.ReadHeader(50 * time.Millisecond); err == nil || time.Since(t0) > 2*time.Second {
		t.Fatalf("a silent source: %v after %v", err, time.Since(t0))
	}
}

func TestAwaitGoSeesTheHandoverThenTheEnd(t *testing.T) {
	src, dst := pair(t)
	gone := make(chan int, 1)
	go func() {
		n := 0
		dst.AwaitGo(func(Go) { n++ })
		gone <- n
	}()
	src.Send(map[string]any{"something": "else"})
	src.Send(Go{Go: true})
	src.Close()
	if n := <-gone; n != 1 {
		t.Fatalf("handover seen %d times, want 1", n)
	}
}

func TestDataPrefaceLeavesTheStreamIntact(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go io.WriteString(a, DataPreface+"0123abcd.nbd\nSTREAM")
	first := make([]byte, 1)
	io.ReadFull(b, first)
	if !IsData(first[0]) {
		t.Fatal("a data preface taken for TLS")
	}
	tok, err := ReadDataToken(b, first[0])
	if err != nil || tok != "0123abcd.nbd" {
		t.Fatalf("token %q, %v", tok, err)
	}
	rest := make([]byte, 6)
	if _, err := io.ReadFull(b, rest); err != nil || string(rest) != "STREAM" {
		t.Fatalf("after the preface %q, %v", rest, err)
	}
	if IsData(0x16) { // a TLS handshake record
		t.Fatal("TLS taken for a data connection")
	}
}

func TestNotAPrefaceHasNoToken(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go io.WriteString(a, "RUBBISH token\n")
	first := make([]byte, 1)
	io.ReadFull(b, first)
	if tok, err := ReadDataToken(b, first[0]); err != nil || tok != "" {
		t.Fatalf("token %q, %v", tok, err)
	}
}

// The wire names are the protocol: a peer of another build reads them.
func TestWireNames(t *testing.T) {
	b, _ := json.Marshal(Reply{DisksReady: true, NBDKey: "k", Listening: true, Running: true})
	for _, k := range []string{`"disks_ready":true`, `"nbd_key":"k"`, `"listening":true`, `"running":true`} {
		if !strings.Contains(string(b), k) {
			t.Fatalf("%s lacks %s", b, k)
		}
	}
	if b, _ := json.Marshal(Go{Go: true}); string(b) != `{"go":true}` {
		t.Fatalf("go is %s", b)
	}
}
