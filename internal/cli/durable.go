package cli

import (
	"flag"
	"fmt"
	"strconv"

	"github.com/ringfence/ringfence/internal/api"
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
	on, err := onOff(pos[1])
	if err != nil {
		return err
	}
	_, err = e.client().SetAutostart(ctx(), pos[0], api.Autostart{On: on, Order: *order, DelaySec: *delay})
	return err
}

// onOff reads a verb's on|off argument.
func onOff(s string) (bool, error) {
	switch s {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, usageError{"expected on or off, not " + strconv.Quote(s)}
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
