package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/ringfence/ringfence/internal/safefile"
)

// The store is never trusted blindly: a zero-byte file (a full disk, a bad
// copy) would open as a fresh store and every definition would be gone; a
// truncated one makes bbolt's mmap fault (SIGBUS); a flipped bit makes its
// page walk panic. So before the daemon opens it, the file is checked in
// a separate process (a fault there cannot take the daemon down), and a
// daemon that finds it damaged refuses to start, naming the backup to use.

// CheckVerb is the hidden command that runs the check in a child process
// (the daemon's binary dispatches it; it reads the records too).
const CheckVerb = "__storecheck"

// Check verifies a store file completely: its meta pages, that the file
// holds every page they claim, and bbolt's own consistency walk.
func Check(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return errors.New("it is empty (zero bytes): a fresh store would forget every domain")
	}
	if err := checkMeta(path, fi.Size()); err != nil {
		return err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		var errs []string
		for err := range tx.Check() {
			errs = append(errs, err.Error())
		}
		if len(errs) > 0 {
			return fmt.Errorf("%d inconsistencies (%s)", len(errs), strings.Join(errs[:min(3, len(errs))], "; "))
		}
		if tx.Bucket(bucket) == nil {
			return errors.New("it has no ringfence bucket")
		}
		return nil
	})
}

// checkMeta reads bbolt's two meta pages: at least one must be intact
// (magic, checksum), and the newest intact one must not claim more pages
// than the file holds (a truncated file).
func checkMeta(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	const pageHdr = 16
	const metaLen = 64 // magic..txid (56 bytes) + checksum
	read := func(off int64) (pageSize uint32, pgid, txid uint64, ok bool) {
		b := make([]byte, pageHdr+metaLen)
		if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
			return 0, 0, 0, false
		}
		m := b[pageHdr:]
		le := binary.LittleEndian
		if le.Uint32(m[0:]) != 0xED0CDAED {
			return 0, 0, 0, false
		}
		h := fnv.New64a()
		h.Write(m[:56])
		if h.Sum64() != le.Uint64(m[56:]) {
			return 0, 0, 0, false
		}
		return le.Uint32(m[8:]), le.Uint64(m[40:]), le.Uint64(m[48:]), true
	}
	ps0, pg0, tx0, ok0 := read(0)
	if !ok0 {
		ps0 = 4096
	}
	ps1, pg1, tx1, ok1 := read(int64(ps0))
	if !ok0 && !ok1 {
		return errors.New("neither of its meta pages is intact: not a store, or overwritten")
	}
	pageSize, pgid := ps0, pg0
	if ok1 && (!ok0 || tx1 > tx0) {
		pageSize, pgid = ps1, pg1
	}
	if need := int64(pgid) * int64(pageSize); size < need {
		return fmt.Errorf("it is truncated: %d bytes of the %d its pages need", size, need)
	}
	return nil
}

// CheckIsolated runs Check in a child process (self is this binary, which
// dispatches CheckVerb), so a fault reading a damaged file cannot kill
// the caller.
func CheckIsolated(self, path string) error {
	out, err := exec.Command(self, CheckVerb, path).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			msg = err.Error() // killed by the fault itself
		}
		return errors.New(msg)
	}
	return nil
}

// Backups are kept in STATE/backups as state.db.<UTC time>, newest last.
const keepBackups = 5

// BackupDir is where a state dir's store backups are.
func BackupDir(stateDir string) string { return filepath.Join(stateDir, "backups") }

// Backups lists a state dir's backups, newest first.
func Backups(stateDir string) []string {
	files, _ := filepath.Glob(filepath.Join(BackupDir(stateDir), "state.db.*"))
	sort.Sort(sort.Reverse(sort.StringSlice(files)))
	return files
}

// Backup writes a consistent copy of the open store (one read
// transaction) into the backup dir and keeps the newest keepBackups. The
// daemon calls it once the store has been read whole (every record
// parsed), so a backup is never a copy of a damaged store.
func (b *Bolt) Backup(stateDir string) (string, error) {
	dir := BackupDir(stateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := b.db.View(func(tx *bolt.Tx) error { _, err := tx.WriteTo(&buf); return err }); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "state.db."+time.Now().UTC().Format("20060102T150405.000"))
	if err := safefile.WriteFile(dst, buf.Bytes(), 0o600); err != nil {
		return "", err
	}
	all := Backups(stateDir)
	for _, old := range all[min(keepBackups, len(all)):] {
		os.Remove(old)
	}
	return dst, nil
}

// Restore puts a backup in place of the store (the daemon must be
// stopped): the backup is checked first, the current file kept as
// state.db.broken-<time>. It returns where the old file went.
func Restore(self, stateDir, backup string) (string, error) {
	if err := CheckIsolated(self, backup); err != nil {
		return "", fmt.Errorf("the backup %s is damaged too: %v", backup, err)
	}
	db := filepath.Join(stateDir, "state.db")
	if f, err := os.Open(db); err == nil {
		// bbolt holds an exclusive flock on the file while a daemon has it.
		lerr := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		f.Close()
		if lerr != nil {
			return "", fmt.Errorf("the store is in use: stop the daemon first")
		}
	}
	aside := ""
	if _, err := os.Stat(db); err == nil {
		aside = db + ".broken-" + time.Now().UTC().Format("20060102T150405")
		if err := os.Rename(db, aside); err != nil {
			return "", err
		}
	}
	b, err := os.ReadFile(backup)
	if err != nil {
		return aside, err
	}
	return aside, safefile.WriteFile(db, b, 0o600)
}
