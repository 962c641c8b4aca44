package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ringfence/ringfence/internal/domain"
	"github.com/ringfence/ringfence/internal/host"
	"github.com/ringfence/ringfence/internal/store"
)

// Offline store maintenance (`ringfence store check|restore`): it works on
// the files of a stopped daemon, like fsck, so the daemon package owns it
// (it owns the state dir's layout) and the CLI only prints.

// StoreCheckVerb is the hidden command that checks a store file in a child
// process; the binary's main dispatches it to StoreCheckMain.
const StoreCheckVerb = store.CheckVerb

// StoreCheckMain is the child's side of an isolated store check: the
// file (bbolt's pages), then every definition and record read as
// recovery reads them.
func StoreCheckMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: "+StoreCheckVerb+" FILE")
		return 2
	}
	if err := store.Check(args[0]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	st, err := store.OpenBoltReadOnly(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer st.Close()
	if err := domain.VerifyStore(context.Background(), st); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// StoreFile is one checked store file: the live store or a backup.
type StoreFile struct {
	Path string `json:"path"`
	Err  string `json:"error,omitempty"`
	Note string `json:"note,omitempty"`
}

// CheckStoreFiles checks the state dir's store and each of its backups,
// newest first.
func CheckStoreFiles(stateDir string) []StoreFile {
	self, _ := os.Executable()
	var out []StoreFile
	files := store.Backups(stateDir)
	if db := filepath.Join(stateDir, "state.db"); exists(db) {
		files = append([]string{db}, files...)
	}
	for _, f := range files {
		sf := StoreFile{Path: f}
		if inUse(f) {
			sf.Note = "in use by the running daemon, which read it whole when it started"
			out = append(out, sf)
			continue
		}
		if err := store.CheckIsolated(self, f); err != nil {
			sf.Err = err.Error()
		}
		out = append(out, sf)
	}
	return out
}

// RestoreStore puts a backup in place of the store: the named one, or the
// newest intact one. It returns the backup used and where the replaced
// file was kept ("" if there was none).
func RestoreStore(stateDir, backup string) (used, aside string, err error) {
	self, _ := os.Executable()
	if backup == "" {
		for _, b := range store.Backups(stateDir) {
			if store.CheckIsolated(self, b) == nil {
				backup = b
				break
			}
		}
		if backup == "" {
			return "", "", fmt.Errorf("no intact backup in %s: restore a copy of your own to %s", store.BackupDir(stateDir), filepath.Join(stateDir, "state.db"))
		}
	}
	aside, err = store.Restore(self, stateDir, backup)
	return backup, aside, err
}

// HolderVerb and HolderMain keep the guests' systemd scope alive (see
// host.DetectCgroups); the binary's main dispatches them.
const HolderVerb = host.HolderVerb

// HolderMain is the scope holder's process.
func HolderMain() int { return host.Hold() }

// inUse reports whether a daemon holds the store (bbolt's flock).
func inUse(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return true
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
