package cli

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/daemon"
	"github.com/ringfence/ringfence/internal/peer"
)

// runHostTrust makes this host's peer certificate (and the CA if needed).
func runHostTrust(e *env, args []string) error {
	fs := flag.NewFlagSet("host trust", flag.ContinueOnError)
	stateDir := fs.String("state-dir", daemon.DefaultStateDir, "the daemon's state directory")
	caFrom := fs.String("ca-from", "", "a TLS dir (STATE/tls) of a host whose CA this host should share")
	var names multiFlag
	fs.Var(&names, "name", "a hostname or IP other hosts reach this one by (repeatable)")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if pos[0] != "trust" {
		return usageError{"expected `host trust`"}
	}
	f := peer.Files{Dir: filepath.Join(*stateDir, "tls")}
	if err := peer.Trust(f, *caFrom, names); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: CA %s, certificate %s\nCopy %s (and ca-key.pem, kept secret) to other hosts with `ringfence host trust --ca-from DIR`; restart the daemon with --listen to accept peers.\n",
		f.Dir, f.CA(), f.Cert(), f.Dir)
	return nil
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// runMigrate is xl migrate: live, with a progress bar on a terminal.
func runMigrate(e *env, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	downtime := fs.Int("max-downtime", 30, "target for the final pause, in ms")
	fs.Bool("live", true, "live migration (always; accepted for xl compatibility)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	cancel := fs.Bool("cancel", false, "stop the running migration of NAME (it keeps running here)")
	withStorage := fs.Bool("with-storage", false, "copy the writable disks live (no shared storage); the destination creates them")
	storageDir := fs.String("storage-dir", "", "with --with-storage: directory on the destination for the copied disks (default: the same paths)")
	plain := fs.Bool("plain-stream", false, "send guest memory unencrypted, for a dedicated trusted migration network (hosts still authenticate each other; faster where CPU is short)")
	pos, err := parse(fs, args, 1, 2)
	if err != nil {
		return err
	}
	if *cancel {
		if len(pos) != 1 {
			return usageError{"--cancel takes only the domain name"}
		}
		return e.client().Action(ctx(), pos[0], "migrate-cancel", nil)
	}
	if len(pos) != 2 {
		return usageError{"expected NAME HOST:PORT"}
	}
	tty := false
	if f, ok := e.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		tty = true
	}
	res, err := e.client().Migrate(ctx(), pos[0], api.MigrateRequest{Target: pos[1], DowntimeMs: *downtime, PlainStream: *plain, WithStorage: *withStorage, StorageDir: *storageDir}, func(p api.MigrationProgress) {
		if !tty {
			return
		}
		total := p.TransferredB + p.RemainingB
		pct := 0.0
		if total > 0 {
			pct = 100 * float64(p.TransferredB) / float64(total)
		}
		if p.Status == "disk-copy" {
			fmt.Fprint(e.stderr, barLine(pct, fmt.Sprintf("disks: copied %d MiB of %d MiB", p.TransferredB>>20, total>>20)))
			return
		}
		fmt.Fprint(e.stderr, barLine(pct, fmt.Sprintf("sent %d MiB, left %d MiB, dirty %d MiB/s, expected downtime %d ms",
			p.TransferredB>>20, p.RemainingB>>20, p.DirtyRateBps>>20, p.ExpectedDownMs)))
	})
	if tty {
		fmt.Fprintln(e.stderr)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, res)
	}
	disks := ""
	if res.DiskBytes > 0 {
		disks = fmt.Sprintf(" (+%d MiB of disks)", res.DiskBytes>>20)
	}
	fmt.Fprintf(e.stderr, "Migrated %s to %s: total %d ms, downtime %d ms (QEMU), %d MiB sent%s\n",
		pos[0], pos[1], res.TotalMs, res.DowntimeMs, res.TransferredB>>20, disks)
	return nil
}
