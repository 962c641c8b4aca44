package cli

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/cmdline"
)

// runHost is the host's trust: `host trust` (the first host becomes the
// authority), `host token` / `host join` for the others, `host peers`,
// `host revoke`, `host renew`.
func runHost(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"expected trust, token, join, peers, revoke, renew, evacuate or resume"}
	}
	sub, args := args[0], args[1:]
	h := &hostCmd{e: e, sub: sub, fs: flag.NewFlagSet("host "+sub, flag.ContinueOnError)}
	h.asJSON = h.fs.Bool("json", false, "print JSON")
	h.peerName = h.fs.String("peer-name", "", "this host's name among its peers (default: the hostname)")
	h.fs.Var(&h.sans, "name", "a host name or IP other hosts reach this one by (repeatable)")
	switch sub {
	case "trust":
		return h.trust(args)
	case "token":
		return h.token(args)
	case "join":
		return h.join(args)
	case "renew":
		return h.renew(args)
	case "peers", "revoke":
		return h.peers(args)
	case "evacuate", "resume":
		return h.evacuate(args)
	}
	return usageError{fmt.Sprintf("unknown `host %s`: expected trust, token, join, peers, revoke, renew, evacuate or resume", sub)}
}

// hostCmd is one `host` subcommand with the flags they share.
type hostCmd struct {
	e        *env
	sub      string
	fs       *flag.FlagSet
	asJSON   *bool
	peerName *string
	sans     multiFlag
}

func (h *hostCmd) trust(args []string) error {
	offline := h.fs.Bool("offline", false, "share the CA key instead (air-gapped set-ups: no peer list, no revocation)")
	caFrom := h.fs.String("ca-from", "", "copy an offline CA from this TLS dir (implies --offline)")
	if _, err := parse(h.fs, args, 0, 0); err != nil {
		return err
	}
	if *caFrom != "" {
		var err error
		if *caFrom, err = h.e.hostPath("--ca-from", *caFrom); err != nil {
			return err
		}
	}
	st, err := h.e.client().Trust(ctx(), api.TrustRequest{PeerName: *h.peerName, Names: h.sans, Offline: *offline, CAFrom: *caFrom})
	return h.show(st, err, func(w io.Writer) {
		if st.Warning != "" {
			fmt.Fprintf(h.e.stderr, "warning: %s\n", st.Warning)
		}
		fmt.Fprintf(w, "This host is %s, the %s. Other hosts join with a token from `ringfence host token`.\n", st.Name, st.Role)
	})
}

func (h *hostCmd) token(args []string) error {
	ttl := h.fs.Duration("ttl", peerTokenTTL, "how long the token may be used (at most 1h)")
	addr := h.fs.String("addr", "", "HOST:PORT the joining host dials (default: this daemon's --listen address)")
	if _, err := parse(h.fs, args, 0, 0); err != nil {
		return err
	}
	tok, err := h.e.client().Token(ctx(), api.TokenRequest{PeerName: *h.peerName, TTLSec: int(ttl.Seconds()), Addr: *addr})
	return h.show(tok, err, func(w io.Writer) {
		fmt.Fprintln(w, tok.Token)
		fmt.Fprintf(h.e.stderr, "Single use, expires %s. On the new host: ringfence host join TOKEN\n", tok.Expires.Local().Format("15:04:05"))
	})
}

func (h *hostCmd) join(args []string) error {
	pos, err := parse(h.fs, args, 1, 1)
	if err != nil {
		return err
	}
	st, err := h.e.client().Join(ctx(), api.JoinRequest{Token: pos[0], PeerName: *h.peerName, Names: h.sans})
	return h.show(st, err, func(w io.Writer) {
		fmt.Fprintf(w, "Joined as %s; the authority is %s; certificate valid until %s.\n", st.Name, st.Authority, st.NotAfter.Format("2006-01-02"))
	})
}

func (h *hostCmd) renew(args []string) error {
	if _, err := parse(h.fs, args, 0, 0); err != nil {
		return err
	}
	st, err := h.e.client().Renew(ctx())
	return h.show(st, err, func(w io.Writer) {
		fmt.Fprintf(w, "New certificate for %s (serial %s), valid until %s.\n", st.Name, st.Serial, st.NotAfter.Format("2006-01-02"))
	})
}

// peers is `host peers` and `host revoke NAME`: both print the list.
func (h *hostCmd) peers(args []string) error {
	min := 0
	if h.sub == "revoke" {
		min = 1
	}
	pos, err := parse(h.fs, args, min, min)
	if err != nil {
		return err
	}
	var l api.PeerList
	if h.sub == "revoke" {
		l, err = h.e.client().Revoke(ctx(), pos[0])
	} else {
		l, err = h.e.client().Peers(ctx())
	}
	return h.show(l, err, func(w io.Writer) { printPeers(w, l) })
}

// show is a subcommand's answer: its error, v as JSON with --json, else
// what text writes.
func (h *hostCmd) show(v any, err error, text func(w io.Writer)) error {
	if err != nil {
		return err
	}
	if *h.asJSON {
		return printJSON(h.e.stdout, v)
	}
	text(h.e.stdout)
	return nil
}

func printPeers(w io.Writer, l api.PeerList) {
	if l.Role == "offline" {
		fmt.Fprintln(w, "offline trust: no peer list (any certificate from the shared CA is accepted)")
		return
	}
	fmt.Fprintf(w, "%-24s %-10s %-21s %s\n", "HOST", "ROLE", "ADDRESS", "CERT EXPIRES")
	for _, p := range l.Peers {
		role := "member"
		if p.Authority {
			role = "authority"
		}
		fmt.Fprintf(w, "%-24s %-10s %-21s %s\n", p.Name, role, p.Addr, p.NotAfter.Format("2006-01-02"))
	}
	fmt.Fprintf(w, "(list version %d, from %s)\n", l.Version, l.Authority)
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
	async := asyncFlag(fs)
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
	bar := newProgress(e)
	res, err := e.client().Migrate(async.ctx(e), pos[0], api.MigrateRequest{Target: pos[1], DowntimeMs: *downtime, PlainStream: *plain, WithStorage: *withStorage, StorageDir: *storageDir}, func(p api.MigrationProgress) {
		total := p.TransferredB + p.RemainingB
		if p.Status == "disk-copy" {
			bar.update(p.TransferredB, total, fmt.Sprintf("disks: %s of %s", sizeText(p.TransferredB), sizeText(total)))
			return
		}
		bar.update(p.TransferredB, total, fmt.Sprintf("sent %s, dirty %s/s, downtime ~%d ms", sizeText(p.TransferredB), sizeText(p.DirtyRateBps), p.ExpectedDownMs))
	})
	bar.end()
	if err != nil || async.started(e) {
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
