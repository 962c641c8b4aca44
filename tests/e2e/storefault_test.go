package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// damage is one way a store file goes bad.
type damage struct {
	name string
	do   func(t *testing.T, db string)
}

var damages = []damage{
	{"zero bytes (a full disk, a bad copy)", func(t *testing.T, db string) {
		if err := os.Truncate(db, 0); err != nil {
			t.Fatal(err)
		}
	}},
	{"truncated (bbolt's mmap would SIGBUS)", func(t *testing.T, db string) {
		// Short of the pages in use (the file is often longer: bbolt
		// grows it ahead), as a copy cut off midway is.
		b, err := bolt.Open(db, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		var used int64
		b.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
		b.Close()
		if err := os.Truncate(db, used/2); err != nil {
			t.Fatal(err)
		}
	}},
	{"a flipped page header (bbolt's walk would panic)", func(t *testing.T, db string) {
		// The bucket's root page: the one every record hangs from.
		b, err := bolt.Open(db, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		var root uint64
		var psize int
		b.View(func(tx *bolt.Tx) error {
			root, psize = uint64(tx.Bucket([]byte("ringfence")).Root()), tx.DB().Info().PageSize
			return nil
		})
		b.Close()
		if root == 0 {
			t.Fatal("the bucket is inline: no page to damage")
		}
		f, _ := os.OpenFile(db, os.O_RDWR, 0)
		defer f.Close()
		// page header: id (8 bytes), flags (2): an impossible page type.
		f.WriteAt([]byte{0xff, 0xff}, int64(root)*int64(psize)+8)
	}},
	{"one record garbled (bytes of its JSON overwritten)", func(t *testing.T, db string) {
		raw, _ := os.ReadFile(db)
		n := 0
		for i := bytes.Index(raw, []byte(`{"spec":{"name":"`)); i >= 0; {
			copy(raw[i:], `{"spXc":{"nXme":"`)
			n++
			j := bytes.Index(raw[i+1:], []byte(`{"spec":{"name":"`))
			if j < 0 {
				break
			}
			i += 1 + j
		}
		if n == 0 {
			t.Fatal("no record found to garble")
		}
		os.WriteFile(db, raw, 0o600)
	}},
}

// A store the daemon cannot fully read is refused with one clear error
// naming the file and the backup, and nothing is killed or lost: the
// guests run on, and come back under the daemon once the store is
// restored. A guest newer than the backup restored is re-adopted from
// its run dir, not taken for a stranger.
func TestStoreDamage(t *testing.T) {
	e := NewEnv(t)
	e.Boot("a", "")
	e.StopDaemon()
	e.StartDaemon() // the store is checked and backed up at each start
	e.Boot("b", "") // newer than the backup
	pids := map[string]int{"a": e.Domain("a").PID, "b": e.Domain("b").PID}
	db := filepath.Join(e.State, "state.db")
	for i, dmg := range damages {
		e.KillDaemon()
		good, err := os.ReadFile(db)
		if err != nil {
			t.Fatal(err)
		}
		dmg.do(t, db)
		out := e.StartDaemonFails()
		if !strings.Contains(out, "damaged") || !strings.Contains(out, db) || !strings.Contains(out, "store restore") {
			t.Fatalf("%s: the refusal does not name the file and the fix:\n%s", dmg.name, out)
		}
		for n, p := range pids {
			if !containsInt(e.QEMUs(), p) {
				t.Fatalf("%s: %s's QEMU (pid %d) was killed by a refused start", dmg.name, n, p)
			}
		}
		if i < len(damages)-1 {
			os.WriteFile(db, good, 0o600)
		} else {
			// The admin's way: check, then restore the newest good backup.
			r := e.RF("store", "check", "--state-dir", e.State)
			if r.Code == 0 || !strings.Contains(r.Stdout, "DAMAGED") || !strings.Contains(r.Stdout, "backups/state.db.") {
				t.Fatalf("store check: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
			}
			// The oldest backup: made before b existed.
			backups, _ := filepath.Glob(filepath.Join(e.State, "backups", "state.db.*"))
			if len(backups) < 2 {
				t.Fatalf("backups: %v", backups)
			}
			sort.Strings(backups)
			r = e.RF("store", "restore", "--state-dir", e.State, backups[0])
			if r.Code != 0 || !strings.Contains(r.Stderr, "restored") {
				t.Fatalf("store restore: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
			}
		}
		e.StartDaemon()
		for n, p := range pids {
			if d := e.Domain(n); d.PID != p {
				t.Fatalf("%s: %s after the store came back: pid %d, want %d (re-attached)", dmg.name, n, d.PID, p)
			}
		}
	}
	if !strings.Contains(e.DaemonLog(), "re-adopting a running domain the store did not know") {
		t.Fatal("b (newer than the backup) was not re-adopted from its run dir")
	}
	// A store that vanished while its backups remain is refused too.
	e.KillDaemon()
	os.Remove(db)
	if out := e.StartDaemonFails(); !strings.Contains(out, "missing") || !strings.Contains(out, "store restore") {
		t.Fatalf("a missing store with backups:\n%s", out)
	}
	e.MustRF("store", "restore", "--state-dir", e.State)
	e.StartDaemon()
	for n := range pids {
		e.Domain(n)
	}
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
