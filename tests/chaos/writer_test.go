package chaos

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// disk builds a writer's disk image from records (one a block, "" = an
// empty block) and a collision-area line.
func disk(collision string, recs ...string) []byte {
	img := make([]byte, (recordFirst+len(recs)+2)*blockSize)
	copy(img, writerScript)
	copy(img[collisionFirst*blockSize:], collision)
	for i, r := range recs {
		copy(img[(recordFirst+i)*blockSize:], r)
	}
	return img
}

func TestVerify(t *testing.T) {
	a := func(seq, blk int) string { return fmt.Sprintf("RFW alpha aaaa %d %d\n", seq, blk) }
	b := func(seq, blk int) string { return fmt.Sprintf("RFW beta bbbb %d %d\n", seq, blk) }
	for _, tc := range []struct {
		name      string
		img       []byte
		hosts     string
		violation string // "" = none
	}{
		{"one incarnation", disk("", a(0, 0), a(1, 1), a(2, 2)), "alpha", ""},
		{"a takeover", disk("", a(0, 0), a(1, 1), b(0, 2), b(1, 3)), "alpha beta", ""},
		{"empty", disk(""), "", ""},
		{"the old owner wrote after the takeover", disk("", a(0, 0), b(0, 1), a(1, 2)), "alpha beta alpha", "wrote again after another had begun"},
		{"a record overwritten", disk("", a(0, 0), b(0, 1), a(2, 2)), "alpha beta alpha", "wrote again"},
		{"a sequence hole", disk("", a(0, 0), a(2, 1)), "alpha", "seq 2 where 1 was due"},
		{"an incarnation not from 0", disk("", b(3, 0)), "beta", "begins at seq 3"},
		{"a record after an empty block", disk("", a(0, 0), "", a(1, 2)), "alpha", "after the empty block 1"},
		{"a record in the wrong block", disk("", a(0, 0), a(1, 5)), "alpha", "meant for block 5"},
		{"a collision", disk("RFX beta bbbb 7\n", a(0, 0)), "alpha", "found its next block taken"},
		{"garbage", disk("", "hello\n"), "", "not a writer's record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := verify(bytes.NewReader(tc.img))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(v.Hosts(), " "); got != tc.hosts {
				t.Errorf("hosts %q, want %q", got, tc.hosts)
			}
			if tc.violation == "" && !v.OK() {
				t.Errorf("violations on a clean disk: %s", v)
			}
			if tc.violation != "" && !strings.Contains(strings.Join(v.Violations, "\n"), tc.violation) {
				t.Errorf("want a violation saying %q, got %s", tc.violation, v)
			}
		})
	}
}

// runWriter runs the real writer script with the host's busybox on a
// disk file, as incarnation boot of host.
func runWriter(t *testing.T, path, host, boot string, count int, sleep string) *exec.Cmd {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("no busybox on this host")
	}
	cmd := exec.Command(bb, "sh", "-c", writerScript, "w.sh", host)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "RFW_DISK=" + path, "RFW_BLOCKS=256", "RFW_BOOT=" + boot,
		fmt.Sprintf("RFW_COUNT=%d", count), "RFW_SLEEP=" + sleep}
	return cmd
}

// TestWriterScript: the script the guest runs, run here by busybox on a
// file. Incarnations one after another verify clean and continue where
// the last stopped; two at once are caught.
func TestWriterScript(t *testing.T) {
	dir := t.TempDir()
	seq := filepath.Join(dir, "seq.img")
	if err := MakeWriterDisk(seq, 1); err != nil {
		t.Fatal(err)
	}
	if err := MakeWriterDisk(seq, 1); err == nil {
		t.Fatal("MakeWriterDisk overwrote an existing disk")
	}
	for i, h := range []string{"alpha", "beta", "alpha"} {
		out, err := runWriter(t, seq, h, fmt.Sprintf("boot%d", i), 5, "0").CombinedOutput()
		if err != nil || !strings.Contains(string(out), fmt.Sprintf("RFW-START host=%s boot=boot%d at=%d", h, i, 5*i)) {
			t.Fatalf("writer %d: %v\n%s", i, err, out)
		}
	}
	v, err := VerifyDisk(seq)
	if err != nil || !v.OK() || v.Records != 15 || strings.Join(v.Hosts(), " ") != "alpha beta alpha" {
		t.Fatalf("three incarnations in turn: %v %s", err, v)
	}

	// Two writers at once: the second finds the first's blocks (or they
	// overwrite each other): the verifier must not call it clean.
	both := filepath.Join(dir, "both.img")
	if err := MakeWriterDisk(both, 1); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i, h := range []string{"alpha", "beta"} {
		wg.Add(1)
		cmd := runWriter(t, both, h, fmt.Sprintf("twin%d", i), 40, "0.01")
		go func() { defer wg.Done(); cmd.Run() }()
	}
	wg.Wait()
	if v, err := VerifyDisk(both); err != nil || v.OK() {
		t.Fatalf("two writers at once verified clean: %v %s", err, v)
	}
}
