package cli

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// parseMemKiB reads xl's memory argument: a number with an optional b, k,
// m, g or t suffix, KiB when there is none (as xl mem-set).
func parseMemMiB(s string) (int, error) {
	mult := float64(1) / 1024 // KiB -> MiB
	switch strings.ToLower(s[len(s)-1:]) {
	case "b":
		mult = 1.0 / (1 << 20)
	case "k":
		mult = 1.0 / 1024
	case "m":
		mult = 1
	case "g":
		mult = 1024
	case "t":
		mult = 1 << 20
	}
	num := strings.TrimRight(s, "bBkKmMgGtT")
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 {
		return 0, usageError{fmt.Sprintf("%q is not a memory size: write e.g. 512m, 1g or 262144 (KiB, as xl)", s)}
	}
	return int(n * mult), nil
}

func memVerb(action string) func(*env, []string) error {
	return func(e *env, args []string) error {
		fs := flag.NewFlagSet(action, flag.ContinueOnError)
		pos, err := parse(fs, args, 2, 2)
		if err != nil {
			return err
		}
		mib, err := parseMemMiB(pos[1])
		if err != nil {
			return err
		}
		return e.client().Action(ctx(), pos[0], action, api.MemRequest{MemoryMiB: mib})
	}
}

func runSchedCredit(e *env, args []string) error {
	fs := flag.NewFlagSet("sched-credit", flag.ContinueOnError)
	name := fs.String("d", "", "domain")
	weight := fs.Int("w", -1, "weight 1..65535 (default 256)")
	cap := fs.Int("c", -1, "cap in percent of one CPU (0 = none)")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *weight != -1 || *cap != -1 {
		if *name == "" {
			return usageError{"-w and -c need -d NAME"}
		}
		if *weight == 0 || *weight < -1 {
			return usageError{fmt.Sprintf("weight %d: must be 1..65535", *weight)}
		}
		if *cap < -1 {
			return usageError{fmt.Sprintf("cap %d: must be 0 (none) or a percentage", *cap)}
		}
		return e.client().Action(ctx(), *name, "sched-credit", api.SchedCreditRequest{Weight: *weight, Cap: *cap})
	}
	var names []string
	if *name != "" {
		names = []string{*name}
	}
	ds, err := listDomains(e, names, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%-32s %5s %6s %4s\n", "Name", "ID", "Weight", "Cap")
	for _, d := range ds {
		fmt.Fprintf(e.stdout, "%-32s %5d %6d %4d\n", d.Spec.Name, d.ID, d.Spec.CPUWeight, d.Spec.Cap)
	}
	return nil
}

func runVCPUPin(e *env, args []string) error {
	fs := flag.NewFlagSet("vcpu-pin", flag.ContinueOnError)
	pos, err := parse(fs, args, 3, 3)
	if err != nil {
		return err
	}
	vcpu := -1
	if pos[1] != "all" {
		if vcpu, err = strconv.Atoi(pos[1]); err != nil || vcpu < 0 {
			return usageError{fmt.Sprintf("vcpu %q: a vCPU number or all", pos[1])}
		}
	}
	return e.client().Action(ctx(), pos[0], "vcpu-pin", api.VCPUPinRequest{VCPU: vcpu, CPUs: pos[2]})
}

func runSave(e *env, args []string) error {
	fs := flag.NewFlagSet("save", flag.ContinueOnError)
	keep := fs.Bool("c", false, "checkpoint: leave the domain running")
	async := asyncFlag(fs)
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	if e.remote != nil {
		if *async.on {
			return usageError{"--async needs the daemon to write FILE: over a remote the image comes to this machine as it is made"}
		}
		return saveRemote(e, pos[0], pos[1], *keep)
	}
	path, err := filepath.Abs(pos[1])
	if err != nil {
		return err
	}
	t0 := time.Now()
	c, end := withBar(e, async)
	err = e.client().Action(c, pos[0], "save", api.SaveRequest{Path: path, Checkpoint: *keep})
	end()
	if err != nil || async.started(e) {
		return err
	}
	fi, _ := os.Stat(path)
	size := int64(0)
	if fi != nil {
		size = fi.Size()
	}
	fmt.Fprintf(e.stderr, "Saved %s to %s (%.1f MiB in %.2f s)\n", pos[0], path, float64(size)/(1<<20), time.Since(t0).Seconds())
	return nil
}

func runRestore(e *env, args []string) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	paused := fs.Bool("p", false, "leave the domain paused")
	async := asyncFlag(fs)
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	var d api.Domain
	if e.remote != nil {
		// The image is this machine's file: uploaded, then restored there.
		d, err = restoreRemote(e, async.ctx(e), pos[0], *paused)
	} else {
		path, aerr := filepath.Abs(pos[0])
		if aerr != nil {
			return aerr
		}
		c, end := withBar(e, async)
		d, err = e.client().Restore(c, api.RestoreRequest{Path: path, Paused: *paused})
		end()
	}
	if err != nil || async.started(e) {
		return err
	}
	fmt.Fprintf(e.stderr, "Restored domain %s (id %d)\n", d.Spec.Name, d.ID)
	return nil
}
