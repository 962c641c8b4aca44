package cli

// image default | build | list | delete. OS images are built here, on
// the host, not in the daemon: a build runs package maintainer scripts
// as root in a chroot for minutes, which has no business inside the
// process that holds every guest (a hung or misbehaving script never
// blocks or endangers it); the daemon is asked only where the pool is.
// Ctrl-C cancels a build and leaves the pool as it was. list and delete
// read and change the pool's directory on this host, as build writes it.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/image"
	"github.com/ringfence/ringfence/internal/storage"
)

// defaultImagePool is the pool `image build` uses without --pool.
const defaultImagePool = "images"

// debCacheDir keeps the packages image builds download.
var debCacheDir = "/var/cache/ringfence/debs"

func runImage(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"expected default, build, list or delete"}
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "default":
		return runImageDefault(e, args)
	case "build":
		return runImageBuild(e, args)
	case "list":
		fs := flag.NewFlagSet("image list", flag.ContinueOnError)
		return listTable(e, fs, args, 0, func([]string) ([]api.Image, error) {
			pools, err := e.client().Pools(ctx())
			return storage.Images(pools), err
		}, "NAME\tPOOL\tSIZE\tCLONES\tBUILT\tOS", func(im api.Image) string {
			return fmt.Sprintf("%s\t%s\t%s\t%d\t%s\t%s", im.Name, im.Pool, sizeText(im.SizeB), len(im.Clones),
				im.Built.UTC().Format("2006-01-02 15:04"), clip(im.OS, 24))
		})
	case "delete":
		fs := flag.NewFlagSet("image delete", flag.ContinueOnError)
		pool := fs.String("pool", "", "the image's pool (when several pools have one of that name)")
		pos, err := parse(fs, args, 1, 1)
		if err != nil {
			return err
		}
		pools, err := e.client().Pools(ctx())
		if err != nil {
			return err
		}
		im, err := storage.FindImage(pools, pos[0], *pool)
		if err != nil {
			return err
		}
		for _, p := range pools {
			if p.Name == im.Pool {
				if err := storage.DeleteImage(p, im.Name); err != nil {
					return err
				}
			}
		}
		fmt.Fprintf(e.stderr, "Deleted image %s from pool %s\n", im.Name, im.Pool)
		return nil
	}
	return usageError{"unknown image command " + sub + ": expected default, build, list or delete"}
}

// runImageBuild: image build NAME [--packages P,...] [--size 4G] [--pool P]
func runImageBuild(e *env, args []string) error {
	fs := flag.NewFlagSet("image build", flag.ContinueOnError)
	packages := fs.String("packages", "", "more Debian packages, comma-separated")
	size := fs.String("size", "4G", "the template's disk size (clones may be larger)")
	poolName := fs.String("pool", defaultImagePool, "the pool the template goes to")
	verbose := fs.Bool("v", false, "show debootstrap's and the tools' output")
	asJSON := fs.Bool("json", false, "print the image as JSON")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	sz, err := storage.ParseSize(*size)
	if err != nil {
		return fmt.Errorf("--size: %w", err)
	}
	b := image.CloudBuild{Name: pos[0], SizeB: sz, CacheDir: debCacheDir}
	if *packages != "" {
		b.Packages = strings.Split(*packages, ",")
	}
	if err := b.Check(); err != nil {
		return err
	}
	if b.Pool, err = findPool(e, *poolName); err != nil {
		return err
	}
	if im, ok := b.Built(); ok {
		fmt.Fprintf(e.stderr, "image %s is built and up to date in pool %s (recipe %s)\n", im.Name, im.Pool, im.Recipe)
		return printImage(e, im, *asJSON)
	}
	if *verbose {
		b.Log = e.stderr
	}
	cols := newProgress(e).width
	start := time.Now()
	b.Progress = func(step, of int, what string) {
		line := fmt.Sprintf("==> [%d/%d %s] %s", step, of, time.Since(start).Round(time.Second), what)
		fmt.Fprintln(e.stderr, clip(line, max(cols()-1, 0)))
	}
	c, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	im, err := b.Build(c)
	if err != nil {
		if c.Err() != nil {
			return fmt.Errorf("image build %s interrupted: nothing was left in pool %s", b.Name, b.Pool.Name)
		}
		return err
	}
	fmt.Fprintf(e.stderr, "Built image %s in pool %s in %s\n", im.Name, im.Pool, time.Since(start).Round(time.Second))
	return printImage(e, im, *asJSON)
}

func printImage(e *env, im api.Image, asJSON bool) error {
	if asJSON {
		return printJSON(e.stdout, im)
	}
	fmt.Fprintln(e.stdout, im.Template)
	return nil
}

// findPool asks the daemon for a pool by name; the image goes into its
// directory on this host.
func findPool(e *env, name string) (api.Pool, error) {
	pools, err := e.client().Pools(ctx())
	if err != nil {
		return api.Pool{}, err
	}
	for _, p := range pools {
		if p.Name == name {
			return p, nil
		}
	}
	return api.Pool{}, api.Errorf(api.ErrNotFound, "no pool %s: make one (ringfence pool create %s --dir /var/lib/ringfence/%s --shared) or name another with --pool",
		name, name, name)
}

func runImageDefault(e *env, args []string) error {
	fs := flag.NewFlagSet("image default", flag.ContinueOnError)
	dir := fs.String("dir", filepath.Join(api.DefaultStateDir, "images", "default"), "where to write the image")
	force := fs.Bool("force", false, "rebuild even if the image exists")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	p := image.PathsIn(*dir)
	if p.Built() && !*force {
		fmt.Fprintf(e.stderr, "default guest already built in %s (--force rebuilds)\n", *dir)
		fmt.Fprintln(e.stdout, p.Config)
		return nil
	}
	p, err := image.BuildDefault(*dir, func(s string) { fmt.Fprintln(e.stderr, "==>", s) })
	if err != nil {
		return fmt.Errorf("building the default guest: %w", err)
	}
	fmt.Fprintln(e.stdout, p.Config)
	return nil
}
