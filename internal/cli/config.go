package cli

import (
	"flag"
	"fmt"
	"os"
	"os/exec"

	"github.com/ringfence/ringfence/internal/api"

	"github.com/ringfence/ringfence/internal/config"
)

// runConfig is `ringfence config check|show|export|update|edit`.
func runConfig(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"expected check, show, export, update or edit"}
	}
	switch args[0] {
	case "check":
		return configCheck(e, args[1:])
	case "show":
		return configShow(e, args[1:])
	case "export":
		return configExport(e, args[1:])
	case "update":
		return configUpdate(e, args[1:])
	case "edit":
		return configEdit(e, args[1:])
	}
	return usageError{fmt.Sprintf("unknown config command %q", args[0])}
}

// configCheck reports every file's diagnostics (stderr, in line order)
// and what it maps to (stdout); it exits 1 if any file has an error.
func configCheck(e *env, args []string) error {
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	quiet := fs.Bool("q", false, "only diagnostics, no summary")
	asJSON := fs.Bool("json", false, "print a JSON report per file on stdout (for CI linters)")
	strict := fs.Bool("strict", false, "also refuse what xl's own parser refuses, so the file works on Xen too")
	files, err := parse(fs, args, 1, -1)
	if err != nil {
		return err
	}
	bad := 0
	var reports []config.Report
	for _, f := range files {
		spec, warns, err := config.LoadWith(f, config.Options{Strict: *strict})
		r := config.NewReport(f, spec, warns, err)
		if err != nil {
			bad++
		}
		if *asJSON {
			reports = append(reports, r)
			continue
		}
		for _, d := range r.Diagnostics {
			fmt.Fprintln(e.stderr, d.String())
		}
		if err == nil {
			fmt.Fprintf(e.stdout, "%s: ok\n", f)
			if !*quiet {
				for _, line := range config.Summary(spec) {
					fmt.Fprintln(e.stdout, "  "+line)
				}
			}
		}
	}
	if *asJSON {
		if err := printJSON(e.stdout, reports); err != nil {
			return err
		}
	} else if bad > 0 {
		fmt.Fprintf(e.stderr, "%d of %d files have errors\n", bad, len(files))
	}
	if bad > 0 {
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
	text, err := exportText(e, names[0])
	if err != nil {
		return err
	}
	fmt.Fprint(e.stdout, text)
	return nil
}

// exportText is a domain as a domain file: a defined domain's definition
// (the next start's, with a pending update), else the spec it runs with.
func exportText(e *env, name string) (string, error) {
	c := e.client()
	d, err := c.Get(ctx(), name)
	if err != nil {
		return "", err
	}
	if d.Defined {
		def, err := c.Definition(ctx(), name)
		if err != nil {
			return "", err
		}
		spec, note := def.Spec, ""
		if def.Pending != nil {
			spec, note = *def.Pending, " (an update waiting for its next start)"
		}
		return fmt.Sprintf("# exported by ringfence: the definition of %s%s\n%s", name, note, config.Format(spec)), nil
	}
	return fmt.Sprintf("# exported by ringfence from domain %s (id %d)\n%s", d.Spec.Name, d.ID, config.Format(d.Spec)), nil
}

// configUpdate replaces a defined domain's definition from a file.
func configUpdate(e *env, args []string) error {
	fs := flag.NewFlagSet("config update", flag.ContinueOnError)
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	return updateFrom(e, pos[0], pos[1])
}

func updateFrom(e *env, name, file string) error {
	spec, err := loadFile(e, file)
	if err != nil {
		return err
	}
	def, err := e.client().UpdateDefinition(ctx(), name, spec)
	if err != nil {
		return err
	}
	if def.Pending != nil {
		fmt.Fprintf(e.stderr, "%s's definition is updated; it runs on with the old one until its next start (ringfence shutdown, then start)\n", name)
	} else {
		fmt.Fprintf(e.stderr, "%s's definition is updated; its next start uses it\n", name)
	}
	return nil
}

// configEdit opens a defined domain's domain file in $EDITOR and applies
// it when saved; a file with errors is kept (and nothing changed).
func configEdit(e *env, args []string) error {
	fs := flag.NewFlagSet("config edit", flag.ContinueOnError)
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	text, err := exportText(e, pos[0])
	if err != nil {
		return err
	}
	f, err := os.CreateTemp("", pos[0]+"-*.cfg")
	if err != nil {
		return err
	}
	f.WriteString(text)
	f.Close()
	editor := os.Getenv("VISUAL")
	if editor == "" {
		editor = os.Getenv("EDITOR")
	}
	if editor == "" {
		editor = "vi"
	}
	cmd := exec.Command("sh", "-c", editor+` "$1"`, "editor", f.Name())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, e.stdout, e.stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("the editor (%s) failed: %w; the file is %s", editor, err, f.Name())
	}
	after, _ := os.ReadFile(f.Name())
	if string(after) == text {
		os.Remove(f.Name())
		fmt.Fprintln(e.stderr, "no change")
		return nil
	}
	if err := updateFrom(e, pos[0], f.Name()); err != nil {
		return fmt.Errorf("%w\nnothing changed; your edit is kept in %s", err, f.Name())
	}
	os.Remove(f.Name())
	return nil
}

// loadFile reads a domain file, printing its warnings on stderr. A file
// with several errors has them all printed, in line order with its
// warnings; the error returned then says how many.
func loadFile(e *env, path string) (api.DomainSpec, error) {
	spec, warns, err := config.Load(path)
	return spec, reportLoad(e, path, warns, err)
}

// reportLoad prints what reading a domain file said (see loadFile) and
// returns the error to fail with, if any.
func reportLoad(e *env, path string, warns []config.Warning, err error) error {
	n := config.ErrorCount(err)
	if n <= 1 {
		for _, w := range warns {
			fmt.Fprintln(e.stderr, w.String())
		}
		return err
	}
	for _, d := range config.Diagnostics(warns, err) {
		fmt.Fprintln(e.stderr, d.String())
	}
	return fmt.Errorf("%s has %d errors (above): nothing was done", path, n)
}
