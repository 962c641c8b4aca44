package cli

import (
	"flag"
	"fmt"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/cmdline"
)

// runHost is the host's trust: `host trust` (the first host becomes the
// authority), `host token` / `host join` for the others, `host peers`,
// `host revoke`, `host renew`.
func runHost(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"expected trust, token, join, peers, revoke or renew"}
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("host "+sub, flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	peerName := fs.String("peer-name", "", "this host's name among its peers (default: the hostname)")
	var sans multiFlag
	fs.Var(&sans, "name", "a host name or IP other hosts reach this one by (repeatable)")
	switch sub {
	case "trust":
		offline := fs.Bool("offline", false, "share the CA key instead (air-gapped set-ups: no peer list, no revocation)")
		caFrom := fs.String("ca-from", "", "copy an offline CA from this TLS dir (implies --offline)")
		if _, err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		if *caFrom != "" {
			*caFrom = absPath(*caFrom)
		}
		st, err := e.client().Trust(ctx(), api.TrustRequest{PeerName: *peerName, Names: sans, Offline: *offline, CAFrom: *caFrom})
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, st)
		}
		if st.Warning != "" {
			fmt.Fprintf(e.stderr, "warning: %s\n", st.Warning)
		}
		fmt.Fprintf(e.stdout, "This host is %s, the %s. Other hosts join with a token from `ringfence host token`.\n", st.Name, st.Role)
		return nil
	case "token":
		ttl := fs.Duration("ttl", peerTokenTTL, "how long the token may be used (at most 1h)")
		addr := fs.String("addr", "", "HOST:PORT the joining host dials (default: this daemon's --listen address)")
		if _, err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		tok, err := e.client().Token(ctx(), api.TokenRequest{PeerName: *peerName, TTLSec: int(ttl.Seconds()), Addr: *addr})
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, tok)
		}
		fmt.Fprintln(e.stdout, tok.Token)
		fmt.Fprintf(e.stderr, "Single use, expires %s. On the new host: ringfence host join TOKEN\n", tok.Expires.Local().Format("15:04:05"))
		return nil
	case "join":
		pos, err := parse(fs, args, 1, 1)
		if err != nil {
			return err
		}
		st, err := e.client().Join(ctx(), api.JoinRequest{Token: pos[0], PeerName: *peerName, Names: sans})
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, st)
		}
		fmt.Fprintf(e.stdout, "Joined as %s; the authority is %s; certificate valid until %s.\n", st.Name, st.Authority, st.NotAfter.Format("2006-01-02"))
		return nil
	case "renew":
		if _, err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		st, err := e.client().Renew(ctx())
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, st)
		}
		fmt.Fprintf(e.stdout, "New certificate for %s (serial %s), valid until %s.\n", st.Name, st.Serial, st.NotAfter.Format("2006-01-02"))
		return nil
	case "peers", "revoke":
		min := 0
		if sub == "revoke" {
			min = 1
		}
		pos, err := parse(fs, args, min, min)
		if err != nil {
			return err
		}
		var l api.PeerList
		if sub == "revoke" {
			l, err = e.client().Revoke(ctx(), pos[0])
		} else {
			l, err = e.client().Peers(ctx())
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, l)
		}
		if l.Role == "offline" {
			fmt.Fprintln(e.stdout, "offline trust: no peer list (any certificate from the shared CA is accepted)")
			return nil
		}
		fmt.Fprintf(e.stdout, "%-24s %-10s %-21s %s\n", "HOST", "ROLE", "ADDRESS", "CERT EXPIRES")
		for _, p := range l.Peers {
			role := "member"
			if p.Authority {
				role = "authority"
			}
			fmt.Fprintf(e.stdout, "%-24s %-10s %-21s %s\n", p.Name, role, p.Addr, p.NotAfter.Format("2006-01-02"))
		}
		fmt.Fprintf(e.stdout, "(list version %d, from %s)\n", l.Version, l.Authority)
		return nil
	}
	return usageError{fmt.Sprintf("unknown `host %s`: expected trust, token, join, peers, revoke or renew", sub)}
}

const peerTokenTTL = 10 * time.Minute

type multiFlag = cmdline.List

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
