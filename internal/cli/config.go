package cli

import (
	"flag"
	"fmt"

	"github.com/ringfence/ringfence/internal/api"

	"github.com/ringfence/ringfence/internal/config"
)

// runConfig is `ringfence config check|show|export`.
func runConfig(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"expected check, show or export"}
	}
	switch args[0] {
	case "check":
		return configCheck(e, args[1:])
	case "show":
		return configShow(e, args[1:])
	case "export":
		return configExport(e, args[1:])
	}
	return usageError{fmt.Sprintf("unknown config command %q", args[0])}
}

// configCheck reports every file's diagnostics and what it maps to; it
// exits 1 if any file has an error.
func configCheck(e *env, args []string) error {
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	quiet := fs.Bool("q", false, "only diagnostics, no summary")
	files, err := parse(fs, args, 1, -1)
	if err != nil {
		return err
	}
	bad := 0
	for _, f := range files {
		spec, warns, err := config.Load(f)
		for _, w := range warns {
			fmt.Fprintln(e.stdout, w.String())
		}
		if err != nil {
			fmt.Fprintf(e.stdout, "%v\n", err)
			bad++
			continue
		}
		fmt.Fprintf(e.stdout, "%s: ok\n", f)
		if !*quiet {
			for _, line := range config.Summary(spec) {
				fmt.Fprintln(e.stdout, "  "+line)
			}
		}
	}
	if bad > 0 {
		fmt.Fprintf(e.stderr, "%d of %d files have errors\n", bad, len(files))
		return exitError{1}
	}
	return nil
}

func configShow(e *env, args []string) error {
	fs := flag.NewFlagSet("config show", flag.ContinueOnError)
	fs.Bool("json", true, "print JSON (the only format)")
	files, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	spec, err := loadFile(e, files[0])
	if err != nil {
		return err
	}
	return printJSON(e.stdout, spec)
}

// configExport writes a domain's spec back as an xl.cfg file.
func configExport(e *env, args []string) error {
	fs := flag.NewFlagSet("config export", flag.ContinueOnError)
	names, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	d, err := e.client().Get(ctx(), names[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "# exported by ringfence from domain %s (id %d)\n", d.Spec.Name, d.ID)
	fmt.Fprint(e.stdout, config.Format(d.Spec))
	return nil
}

// loadFile reads a domain file, printing its warnings on stderr.
func loadFile(e *env, path string) (api.DomainSpec, error) {
	spec, warns, err := config.Load(path)
	for _, w := range warns {
		fmt.Fprintln(e.stderr, w.String())
	}
	return spec, err
}
