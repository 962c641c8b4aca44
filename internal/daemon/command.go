package daemon

// The commands that act on this host itself rather than through the API:
// `ringfence serve` and `ringfence store`. cmd/ringfence hands them to the
// CLI (cli.Host), which stays a client of the API and never imports this
// package. Each prints its own errors, as the CLI does, and returns the
// exit code: 0, 1 for an error, 2 for a usage error.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/cmdline"
	"github.com/ringfence/ringfence/internal/storage"
)

// ServeUsage and StoreUsage are the commands' synopses for the CLI's help.
const (
	ServeUsage = "serve [--config FILE] [--state-dir DIR] [--run-dir DIR] [--accel kvm|tcg] [--reserve-mem MiB] [--listen ADDR] [--api-listen ADDR] ..."
	StoreUsage = "store check [--state-dir DIR] [--json] | store restore [--state-dir DIR] [BACKUP]"
)

type usageError = cmdline.UsageError

// exit prints err the CLI's way and returns the exit code.
func exit(stderr io.Writer, verb, usage string, err error) int {
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "ringfence %s: %s\nusage: ringfence %s\n", verb, ue, usage)
		return 2
	}
	fmt.Fprintf(stderr, "ringfence %s: error: %v\n", verb, err)
	return 1
}

// ServeMain is `ringfence serve`: flags over the host's settings file
// into a Config, then Run. socket is the CLI's --socket (or
// RINGFENCE_SOCKET); "" serves on the run dir's socket.
func ServeMain(args []string, socket string, stderr io.Writer) int {
	return exit(stderr, "serve", ServeUsage, serve(args, socket))
}

// ServeFlags are serve's flags on a throwaway Config: for its help and
// ringfence.conf(5), where each is a key of the settings file.
func ServeFlags() *flag.FlagSet {
	fs, _ := serveFlags(&Config{}, &cmdline.List{})
	return fs
}

// serveFlags declares serve's flags over cfg and roots; conf is --config.
func serveFlags(cfg *Config, roots *cmdline.List) (fs *flag.FlagSet, conf *string) {
	fs = flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&cfg.StateDir, "state-dir", api.DefaultStateDir, "state directory (store, images)")
	fs.StringVar(&cfg.RunDir, "run-dir", "", "runtime directory (default /run/ringfence, or STATE-DIR/run with --state-dir)")
	fs.StringVar(&cfg.QEMUBinary, "qemu", "", "QEMU binary (default qemu-system-x86_64)")
	fs.StringVar(&cfg.Accel, "accel", "", "force kvm or tcg (default: probe)")
	fs.StringVar(&cfg.Listen, "listen", "", "peer listener for other hosts (mutual TLS), e.g. :7443")
	fs.StringVar(&cfg.Prices, "prices", "", "the price file `usage invoice` rates with (default "+DefaultPrices+")")
	fs.Var((*cmdline.List)(&cfg.EtcdEndpoints), "etcd-endpoints", "an existing etcd cluster for `cluster init`/`join`: HOST:PORT, repeatable (it must trust this cluster's CA); no etcd member runs here")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", "", "serve /metrics (Prometheus text, no token, plain HTTP) here, e.g. 127.0.0.1:9465: keep it on loopback or a management network")
	fs.StringVar(&cfg.APIListen, "api-listen", "", "remote API listener (HTTPS, TLS 1.3, API tokens), e.g. :8443")
	fs.StringVar(&cfg.QEMUIDs, "qemu-ids", "", "uid range QEMUs run as, one uid per running domain: BASE[:COUNT] (default 2000000000:65536; root: QEMU stays root, development only)")
	fs.Var(roots, "disk-roots", "only directories file disks, kernels, media and pools may be in (repeatable; default: anywhere but the host's system and Ringfence's own dirs)")
	fs.Var(sizeFlag{&cfg.MaxUpload}, "max-upload", "largest archive or save image a client may upload (K, M, G, T suffixes; default 64G)")
	fs.DurationVar(&cfg.ReadTimeout, "read-timeout", 30*time.Second, "longest a client may take to send one request")
	fs.StringVar(&cfg.LogFile, "log", "", "the daemon's log file (default stderr; SIGHUP reopens it)")
	fs.StringVar(&cfg.LogDir, "log-dir", "", "the domains' logs, NAME/{console,qemu}.log (default /var/log/ringfence, or STATE-DIR/log with --state-dir)")
	fs.DurationVar(&cfg.LogRetention, "log-retention", 30*24*time.Hour, "how long the logs of domains that are gone are kept")
	fs.StringVar(&cfg.AutoDir, "auto-dir", "", "domain files defined and started at host boot (default /etc/ringfence/auto for the default state dir)")
	fs.StringVar(&cfg.BootIDFile, "boot-id-file", "", "read the host's boot id here instead of the kernel's (tests of a host reboot)")
	fs.DurationVar(&cfg.QMPTimeout, "qmp-timeout", 30*time.Second, "longest wait for QEMU to answer one monitor command (a stopped or hung QEMU)")
	fs.IntVar(&cfg.RestartLimit, "restart-limit", 5, "restarts a guest may cause (crashes, its own resets) within --restart-window before it is kept stopped")
	fs.DurationVar(&cfg.RestartWindow, "restart-window", 10*time.Minute, "the window of --restart-limit")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 120*time.Second, "idle keep-alive connections are closed after this")
	fs.IntVar(&cfg.OverheadMiB, "qemu-overhead", 0, "QEMU memory per domain beyond guest RAM, in MiB, for the ledger and cgroup limit (default: the engine's measured model)")
	fs.Float64Var(&cfg.VCPURatio, "vcpu-ratio", 1, "vCPUs each host CPU may carry (1 = none oversold)")
	fs.BoolVar(&cfg.NoCgroups, "no-cgroups", false, "run without per-domain cgroups (nothing is enforced; development only)")
	fs.IntVar(&cfg.ReserveMiB, "reserve-mem", 0, "host memory kept from domains in MiB (default 10%, >= 512)")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "the daemon's log level: debug, info, warn or error")
	conf = fs.String("config", "", "the host's settings, in domain-file syntax (default "+DefaultHostConf+" when --state-dir is not given); flags override it")
	return fs, conf
}

func serve(args []string, socket string) error {
	var cfg Config
	var roots cmdline.List
	fs, conf := serveFlags(&cfg, &roots)
	if _, err := cmdline.Parse(fs, args, 0, 0); err != nil {
		return err
	}
	confPath, stateGiven := *conf, false
	fs.Visit(func(f *flag.Flag) { stateGiven = stateGiven || f.Name == "state-dir" })
	if confPath == "" && !stateGiven {
		if _, err := os.Stat(DefaultHostConf); err == nil {
			confPath = DefaultHostConf
		}
	}
	if confPath != "" {
		if err := applyHostConf(fs, confPath); err != nil {
			return err
		}
	}
	for _, r := range roots {
		cfg.DiskRoots = append(cfg.DiskRoots, strings.Split(r, ",")...)
	}
	if cfg.RunDir == "" {
		cfg.RunDir = api.DefaultRunDir
		if cfg.StateDir != api.DefaultStateDir {
			cfg.RunDir = filepath.Join(cfg.StateDir, "run")
		}
	}
	cfg.Socket = socket
	if cfg.Socket == "" {
		cfg.Socket = api.SocketPath(cfg.RunDir)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("ringfence serve must run as root (it creates taps and manages QEMU)")
	}
	return Run(cfg)
}

// StoreMain is `ringfence store check|restore`: it works on the files
// (the daemon may be unable to start), like fsck.
func StoreMain(args []string, stdout, stderr io.Writer) int {
	return exit(stderr, "store", StoreUsage, storeCmd(args, stdout, stderr))
}

// StoreFlags are the flags of store check and store restore (for help).
func StoreFlags() *flag.FlagSet {
	fs, _, _ := storeFlags()
	return fs
}

func storeFlags() (fs *flag.FlagSet, stateDir *string, asJSON *bool) {
	fs = flag.NewFlagSet("store", flag.ContinueOnError)
	stateDir = fs.String("state-dir", api.DefaultStateDir, "the daemon's state directory")
	asJSON = fs.Bool("json", false, "check: print the result as JSON")
	return fs, stateDir, asJSON
}

func storeCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError("expected check or restore")
	}
	sub, args := args[0], args[1:]
	fs, stateDir, asJSON := storeFlags()
	switch sub {
	case "check":
		if _, err := cmdline.Parse(fs, args, 0, 0); err != nil {
			return err
		}
		return storeCheck(*stateDir, *asJSON, stdout)
	case "restore":
		pos, err := cmdline.Parse(fs, args, 0, 1)
		if err != nil {
			return err
		}
		backup := ""
		if len(pos) == 1 {
			backup = pos[0]
		}
		used, aside, err := RestoreStore(*stateDir, backup)
		if err != nil {
			return err
		}
		if aside != "" {
			fmt.Fprintf(stderr, "the replaced store is kept as %s\n", aside)
		}
		fmt.Fprintf(stderr, "restored %s from %s; start the daemon\n", filepath.Join(*stateDir, "state.db"), used)
		return nil
	}
	return usageError("expected check or restore, not " + strconv.Quote(sub))
}

func storeCheck(stateDir string, asJSON bool, stdout io.Writer) error {
	files := CheckStoreFiles(stateDir)
	if len(files) == 0 {
		return fmt.Errorf("no store in %s (and no backups)", stateDir)
	}
	bad := 0
	for _, f := range files {
		if f.Err != "" {
			bad++
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(files); err != nil {
			return err
		}
	} else {
		for _, f := range files {
			switch {
			case f.Err != "":
				fmt.Fprintf(stdout, "%s: DAMAGED: %s\n", f.Path, f.Err)
			case f.Note != "":
				fmt.Fprintf(stdout, "%s: %s\n", f.Path, f.Note)
			default:
				fmt.Fprintf(stdout, "%s: ok\n", f.Path)
			}
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d store files damaged: `ringfence store restore` puts the newest good backup in place", bad, len(files))
	}
	return nil
}

// sizeFlag is a flag of bytes written as 10G, 512M, 4096.
type sizeFlag struct{ v *int64 }

func (f sizeFlag) String() string {
	if f.v == nil || *f.v == 0 {
		return ""
	}
	return strconv.FormatInt(*f.v, 10)
}

func (f sizeFlag) Set(s string) error {
	n, err := storage.ParseSize(s)
	if err == nil {
		*f.v = n
	}
	return err
}
