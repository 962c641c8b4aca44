package cli

import (
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/storage"
)

// runPool: pool create NAME --dir PATH | pool list [--json] | pool delete NAME
func runPool(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"expected create, list or delete"}
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("pool "+sub, flag.ContinueOnError)
	switch sub {
	case "create":
		dir := fs.String("dir", "", "directory that holds the pool's volumes (made if missing)")
		tenant := fs.String("tenant", "", "the tenant that owns the pool and its volumes")
		shared := fs.Bool("shared", false, "a host pool every tenant's domains may read (images, kernels, ISOs)")
		clusterWide := fs.Bool("cluster", false, "declare it cluster-wide: every host of the cluster has it on the same (shared) path")
		pos, err := parse(fs, args, 1, 1)
		if err != nil {
			return err
		}
		if *dir == "" {
			return usageError{"pool create needs --dir PATH"}
		}
		if *dir, err = e.hostPath("--dir", *dir); err != nil {
			return err
		}
		p, err := e.client().CreatePool(ctx(), api.Pool{Name: pos[0], Dir: *dir, Tenant: *tenant, Shared: *shared, Cluster: *clusterWide})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "Created pool %s on %s\n", p.Name, p.Dir)
		return nil
	case "list":
		return listTable(e, fs, args, 0, func([]string) ([]api.Pool, error) { return e.client().Pools(ctx()) },
			"NAME\tTENANT\tSCOPE\tDIRECTORY", func(p api.Pool) string {
				return p.Name + "\t" + ownerColumn(p.Tenant, p.Shared) + "\t" + scopeColumn(p.Cluster) + "\t" + p.Dir
			})
	case "delete":
		pos, err := parse(fs, args, 1, 1)
		if err != nil {
			return err
		}
		return e.client().DeletePool(ctx(), pos[0])
	}
	return usageError{"unknown pool command " + sub}
}

// runVolume: volume create|list|resize|delete.
func runVolume(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"expected create, list, resize or delete"}
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("volume "+sub, flag.ContinueOnError)
	switch sub {
	case "create":
		format := fs.String("format", "", "raw (default) or qcow2")
		from := fs.String("from", "", "template volume in the same pool: make a thin qcow2 clone of it")
		asJSON := fs.Bool("json", false, "JSON output")
		pos, err := parse(fs, args, 2, 3)
		if err != nil {
			return err
		}
		req := api.VolumeRequest{Name: pos[1], Format: *format, From: *from}
		if len(pos) == 3 {
			if req.SizeB, err = storage.ParseSize(pos[2]); err != nil {
				return err
			}
		} else if *from == "" {
			return usageError{"volume create POOL NAME SIZE (SIZE may be left out only with --from)"}
		}
		v, err := e.client().CreateVolume(ctx(), pos[0], req)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, v)
		}
		fmt.Fprintf(e.stderr, "Created volume %s (%s, %s) at %s\n", v.Name, v.Format, size(v.VirtualB), v.Path)
		return nil
	case "list":
		return listTable(e, fs, args, 1, func(pos []string) ([]api.Volume, error) { return e.client().Volumes(ctx(), pos[0]) },
			"NAME\tFORMAT\tVIRTUAL\tALLOCATED\tTEMPLATE", func(v api.Volume) string {
				return strings.Join([]string{v.Name, v.Format, size(v.VirtualB), size(v.AllocatedB), v.Backing}, "\t")
			})
	case "resize":
		pos, err := parse(fs, args, 3, 3)
		if err != nil {
			return err
		}
		sz, err := storage.ParseSize(pos[2])
		if err != nil {
			return err
		}
		v, err := e.client().ResizeVolume(ctx(), pos[0], pos[1], sz)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "Volume %s is now %s\n", v.Name, size(v.VirtualB))
		return nil
	case "delete":
		pos, err := parse(fs, args, 2, 2)
		if err != nil {
			return err
		}
		return e.client().DeleteVolume(ctx(), pos[0], pos[1])
	}
	return usageError{"unknown volume command " + sub}
}

// size prints bytes the way df -h does.
func size(b int64) string {
	f := float64(b)
	for _, u := range []string{"B", "K", "M", "G", "T"} {
		if f < 1024 || u == "T" {
			if u == "B" {
				return fmt.Sprintf("%d%s", b, u)
			}
			return fmt.Sprintf("%.1f%s", f, u)
		}
		f /= 1024
	}
	return ""
}

// runClone: clone SRC NEW [-p] [--json]
func runClone(e *env, args []string) error {
	fs := flag.NewFlagSet("clone", flag.ContinueOnError)
	paused := fs.Bool("p", false, "leave the clone paused")
	asJSON := fs.Bool("json", false, "print the new domain as JSON")
	var vifs, sets multiFlag
	fs.Var(&vifs, "vif", "the clone's vif (xl spec, e.g. 'ip=10.0.0.6,bridge=xenbr0'), one per vif in order (repeatable; '' keeps the source's)")
	fs.Var(&sets, "set", "a setting of the clone's own, KEY=VALUE as in a domain file (memory=512; repeatable)")
	tenant := fs.String("tenant", "", "the tenant that owns the clone (default: the source's)")
	async := asyncFlag(fs)
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	if err := e.client().Action(async.ctx(e), pos[0], "clone", api.CloneRequest{Name: pos[1], Paused: *paused, Vifs: vifs, Set: sets, Tenant: *tenant}); err != nil || async.started(e) {
		return err
	}
	d, err := e.client().Get(ctx(), pos[1])
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, d)
	}
	fmt.Fprintf(e.stderr, "Cloned %s to %s (id %d)\n", pos[0], pos[1], d.ID)
	for _, dk := range d.Spec.Disks {
		if dk.Target != "" && dk.Access != "ro" && !dk.CDROM {
			fmt.Fprintf(e.stderr, "  %s: %s (thin clone)\n", dk.VDev, dk.Target)
		}
	}
	return nil
}

// runSnapshot: snapshot create NAME SNAP [--memory] | list NAME | revert NAME SNAP | delete NAME SNAP
func runSnapshot(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"expected create, list, revert or delete"}
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("snapshot "+sub, flag.ContinueOnError)
	var async *asyncOpt
	if sub == "create" || sub == "revert" {
		async = asyncFlag(fs)
	}
	switch sub {
	case "create":
		memory := fs.Bool("memory", false, "save the running state too: revert resumes this exact moment")
		pos, err := parse(fs, args, 2, 2)
		if err != nil {
			return err
		}
		c, end := withBar(e, async)
		s, err := e.client().CreateSnapshot(c, pos[0], api.SnapshotRequest{Name: pos[1], Memory: *memory})
		end()
		if err != nil || async.started(e) {
			return err
		}
		what := "disks"
		if s.Memory {
			what = "disks and memory"
		}
		fmt.Fprintf(e.stderr, "Snapshot %s of %s taken (%s)\n", s.Name, s.Domain, what)
		return nil
	case "list":
		return listTable(e, fs, args, 1, func(pos []string) ([]api.Snapshot, error) { return e.client().Snapshots(ctx(), pos[0]) },
			"NAME\tCREATED\tMEMORY\tDISKS", func(s api.Snapshot) string {
				var disks []string
				for _, d := range s.Disks {
					disks = append(disks, d.Guest)
				}
				return fmt.Sprintf("%s\t%s\t%v\t%s", s.Name, s.Created.Local().Format("2006-01-02 15:04:05"), s.Memory, strings.Join(disks, ","))
			})
	case "revert":
		pos, err := parse(fs, args, 2, 2)
		if err != nil {
			return err
		}
		d, err := e.client().RevertSnapshot(async.ctx(e), pos[0], pos[1])
		if err != nil || async.started(e) {
			return err
		}
		if d.PID != 0 {
			fmt.Fprintf(e.stderr, "%s is back at snapshot %s, running (id %d)\n", pos[0], pos[1], d.ID)
		} else {
			fmt.Fprintf(e.stderr, "%s's disks are back at snapshot %s; create the domain to start it\n", pos[0], pos[1])
		}
		return nil
	case "delete":
		pos, err := parse(fs, args, 2, 2)
		if err != nil {
			return err
		}
		return e.client().DeleteSnapshot(ctx(), pos[0], pos[1])
	}
	return usageError{"unknown snapshot command " + sub}
}

// listTable is every "X list": nargs positional arguments, a table with
// header and one row per item, or --json.
func listTable[T any](e *env, fs *flag.FlagSet, args []string, nargs int, fetch func([]string) ([]T, error), header string, row func(T) string) error {
	asJSON := fs.Bool("json", false, "JSON output")
	pos, err := parse(fs, args, nargs, nargs)
	if err != nil {
		return err
	}
	items, err := fetch(pos)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, items)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		fmt.Fprintln(tw, row(it))
	}
	return tw.Flush()
}

// runExport: export NAME -o FILE [--json]
func runExport(e *env, args []string) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	out := fs.String("o", "", "archive to write (absolute path on this host; must not exist)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	async := asyncFlag(fs)
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *out == "" {
		return usageError{"export needs -o FILE"}
	}
	if e.remote != nil {
		return exportRemote(e, pos[0], *out, *asJSON)
	}
	path, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	bar, end := jobBar(e)
	res, err := e.client().Export(async.ctx(e), pos[0], api.ExportRequest{Path: path}, bar)
	end()
	if err != nil || async.started(e) {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, res)
	}
	fmt.Fprintf(e.stderr, "Exported %s to %s: %s (from %s) in %.1f s\n", pos[0], res.Path, size(res.Bytes), size(res.InputBytes), float64(res.Ms)/1000)
	return nil
}

// runImport: import FILE [--dir DIR] [--name NEW] [--json]
func runImport(e *env, args []string) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory for the domain's files (default STATE/imports)")
	name := fs.String("name", "", "import under another name (new MACs)")
	asJSON := fs.Bool("json", false, "print the new domain as JSON")
	noStart := fs.Bool("no-start", false, "put the files and their domain file in place, do not start it")
	paused := fs.Bool("p", false, "start it paused")
	tenant := fs.String("tenant", "", "the tenant that owns the domain (its files go into --dir, in one of its pools)")
	async := asyncFlag(fs)
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if e.remote != nil {
		return importRemote(e, async.ctx(e), pos[0], api.ImportRequest{Dir: *dir, Name: *name, NoStart: *noStart, Paused: *paused, Tenant: *tenant}, *asJSON)
	}
	path, err := filepath.Abs(pos[0])
	if err != nil {
		return err
	}
	if *dir != "" {
		if *dir, err = e.hostPath("--dir", *dir); err != nil {
			return err
		}
	}
	bar, end := jobBar(e)
	d, err := e.client().Import(async.ctx(e), api.ImportRequest{Path: path, Dir: *dir, Name: *name, NoStart: *noStart, Paused: *paused, Tenant: *tenant}, bar)
	end()
	if err != nil || async.started(e) {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, d)
	}
	if *noStart {
		fmt.Fprintf(e.stderr, "Imported %s: %s\n", d.Spec.Name, d.LastReason)
		return nil
	}
	fmt.Fprintf(e.stderr, "Imported %s (id %d)\n", d.Spec.Name, d.ID)
	return nil
}

// runCDInsert: cd-insert NAME VDEV FILE, FILE a path on the daemon's
// host (e.hostPath).
func runCDInsert(e *env, args []string) error {
	fs := flag.NewFlagSet("cd-insert", flag.ContinueOnError)
	pos, err := parse(fs, args, 3, 3)
	if err != nil {
		return err
	}
	path, err := e.hostPath("FILE", pos[2])
	if err != nil {
		return err
	}
	return e.client().Action(ctx(), pos[0], "cd-insert", api.BlockRequest{VDev: pos[1], Path: path})
}

// blockVerb is block-attach, block-detach and cd-eject: NAME and the
// verb's arguments into an api.BlockRequest.
func blockVerb(action string, nargs int, req func([]string) api.BlockRequest) func(*env, []string) error {
	return func(e *env, args []string) error {
		fs := flag.NewFlagSet(action, flag.ContinueOnError)
		pos, err := parse(fs, args, nargs, nargs)
		if err != nil {
			return err
		}
		return e.client().Action(ctx(), pos[0], action, req(pos))
	}
}

func runBlockList(e *env, args []string) error {
	fs := flag.NewFlagSet("block-list", flag.ContinueOnError)
	return listTable(e, fs, args, 1, func(pos []string) ([]api.BlockDevice, error) { return e.client().Blocks(ctx(), pos[0]) },
		"VDEV\tGUEST\tTARGET\tFORMAT\tACCESS\tINSERTED\tSLOT", func(b api.BlockDevice) string {
			kind := b.Access
			if b.CDROM {
				kind = "cdrom"
			}
			slot := b.Port
			if slot == "" {
				slot = "boot"
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%v\t%s", b.VDev, b.Guest, b.Target, b.Format, kind, b.Inserted, slot)
		})
}

// hostPath is a path QEMU or the daemon opens on the daemon's host (a
// medium, a directory of saves or of a CA): over the local socket that is
// this host, so a relative one is made absolute here; over a remote it is
// the remote host's, never resolved or looked at here, and must be
// absolute (the remote's disk policy judges it).
func (e *env) hostPath(what, p string) (string, error) {
	if e.remote == nil {
		return filepath.Abs(p)
	}
	if !filepath.IsAbs(p) {
		return "", usageError{fmt.Sprintf("%s %q is a path on the remote's host (%s): give it absolute", what, p, e.remoteName)}
	}
	return filepath.Clean(p), nil
}

// yesNo is a boolean column.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
