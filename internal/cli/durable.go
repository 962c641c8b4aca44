package cli

import (
	"flag"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/daemon"
)

// runDefine stores a domain without starting it (virsh define).
func runDefine(e *env, args []string) error {
	fs := flag.NewFlagSet("define", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the domain as JSON")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	spec, err := loadFile(e, pos[0])
	if err != nil {
		return err
	}
	d, err := e.client().Define(ctx(), spec)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, d)
	}
	fmt.Fprintf(e.stderr, "Defined %s (not started: `ringfence start %s`)\n", d.Spec.Name, d.Spec.Name)
	return nil
}

// runUndefine removes a definition; a running domain runs on, transient.
func runUndefine(e *env, args []string) error {
	fs := flag.NewFlagSet("undefine", flag.ContinueOnError)
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	return e.client().Undefine(ctx(), pos[0])
}

// runAutostart is `autostart NAME on|off [--order N] [--delay S]`.
func runAutostart(e *env, args []string) error {
	fs := flag.NewFlagSet("autostart", flag.ContinueOnError)
	order := fs.Int("order", 0, "start order at boot (lower first)")
	delay := fs.Int("delay", 0, "seconds to wait after starting it, before the next")
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	var on bool
	switch pos[1] {
	case "on":
		on = true
	case "off":
	default:
		return usageError{"expected on or off, not " + strconv.Quote(pos[1])}
	}
	_, err = e.client().SetAutostart(ctx(), pos[0], api.Autostart{On: on, Order: *order, DelaySec: *delay})
	return err
}

// runLog prints a domain's console (or QEMU) log, kept after it is gone.
func runLog(e *env, args []string) error {
	fs := flag.NewFlagSet("log", flag.ContinueOnError)
	qemu := fs.Bool("qemu", false, "QEMU's own log instead of the console")
	tail := fs.Int("tail", 0, "only the last N bytes")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	which := "console"
	if *qemu {
		which = "qemu"
	}
	b, err := e.client().Log(ctx(), pos[0], which, *tail)
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(b)
	return err
}

// runDmesg prints the daemon's recent log.
func runDmesg(e *env, args []string) error {
	fs := flag.NewFlagSet("dmesg", flag.ContinueOnError)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	b, err := e.client().HostLog(ctx())
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(b)
	return err
}

// runStore checks the store and its backups, or restores a backup; it
// works on the files (the daemon may be unable to start), like fsck.
func runStore(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"expected check or restore"}
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("store "+sub, flag.ContinueOnError)
	stateDir := fs.String("state-dir", daemon.DefaultStateDir, "the daemon's state directory")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	switch sub {
	case "check":
		if _, err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		files := daemon.CheckStoreFiles(*stateDir)
		if len(files) == 0 {
			return fmt.Errorf("no store in %s (and no backups)", *stateDir)
		}
		bad := 0
		for _, f := range files {
			if f.Err != "" {
				bad++
			}
		}
		if *asJSON {
			if err := printJSON(e.stdout, files); err != nil {
				return err
			}
		} else {
			for _, f := range files {
				if f.Err != "" {
					fmt.Fprintf(e.stdout, "%s: DAMAGED: %s\n", f.Path, f.Err)
				} else if f.Note != "" {
					fmt.Fprintf(e.stdout, "%s: %s\n", f.Path, f.Note)
				} else {
					fmt.Fprintf(e.stdout, "%s: ok\n", f.Path)
				}
			}
		}
		if bad > 0 {
			return exitError{1}
		}
		return nil
	case "restore":
		pos, err := parse(fs, args, 0, 1)
		if err != nil {
			return err
		}
		backup := ""
		if len(pos) == 1 {
			backup = pos[0]
		}
		used, aside, err := daemon.RestoreStore(*stateDir, backup)
		if err != nil {
			return err
		}
		if aside != "" {
			fmt.Fprintf(e.stderr, "the replaced store is kept as %s\n", aside)
		}
		fmt.Fprintf(e.stderr, "restored %s from %s; start the daemon\n", filepath.Join(*stateDir, "state.db"), used)
		return nil
	}
	return usageError{"expected check or restore, not " + strconv.Quote(sub)}
}
