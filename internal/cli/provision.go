package cli

// create --image (a server from an OS image in one command), exec and
// set-password (the guest agent: the provider's rescue path).

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/config"
	"github.com/ringfence/ringfence/internal/storage"
)

// imageFlags are create's flags for a domain made from an OS image.
type imageFlags struct {
	image, imagePool, sshKey, ip, bridge, diskSize, hostname, passwordHash, userData *string
	memory, vcpus                                                                    *int
	firmware, wait                                                                   *bool
	waitTimeout                                                                      *int
}

func addImageFlags(fs *flag.FlagSet) *imageFlags {
	return &imageFlags{
		image:        fs.String("image", "", "make the domain from this OS image (ringfence image list): then NAME, not FILE"),
		imagePool:    fs.String("image-pool", "", "the image's pool (when several have one of that name)"),
		sshKey:       fs.String("ssh-key", "", "with --image: OpenSSH public key file(s), comma-separated, for root"),
		ip:           fs.String("ip", "", "with --image: the guest's static address on its network (default: DHCP)"),
		bridge:       fs.String("network", "", "with --image: the network (or bridge) of its vif (default xenbr0)"),
		diskSize:     fs.String("disk-size", "", "with --image: the disk's size (default: the image's; the root grows to it)"),
		hostname:     fs.String("hostname", "", "with --image: the guest's host name (default: NAME)"),
		passwordHash: fs.String("password-hash", "", "with --image: root's password as a crypt(3) hash (mkpasswd -m sha-512)"),
		userData:     fs.String("user-data", "", "with --image: a cloud-init user-data file passed through"),
		memory:       fs.Int("memory", 512, "with --image: guest RAM in MiB"),
		vcpus:        fs.Int("vcpus", 1, "with --image: virtual CPUs"),
		firmware:     fs.Bool("firmware", false, "with --image: boot the disk's GRUB through the firmware, not the image's kernel directly"),
		wait:         fs.Bool("w", false, "with --image: wait until the guest agent answers (the guest has booted)"),
		waitTimeout:  fs.Int("timeout", 600, "with -w: seconds to wait"),
	}
}

// spec is the domain the flags describe; files are read here (this
// machine's, also over a remote).
func (f *imageFlags) spec(name string) (api.DomainSpec, error) {
	p := &api.Provision{Image: *f.image, ImagePool: *f.imagePool, Hostname: *f.hostname, PasswordHash: *f.passwordHash}
	s := api.DomainSpec{Name: name, MemoryMiB: *f.memory, VCPUs: *f.vcpus, Provision: p,
		Vifs: []api.Vif{{Bridge: *f.bridge}}}
	if *f.ip != "" {
		s.Vifs[0].IP = []string{*f.ip}
	}
	if *f.firmware {
		s.Bootloader = "pygrub"
	}
	if *f.sshKey == "" {
		return s, usageError{"create --image needs --ssh-key FILE (an OpenSSH public key, e.g. ~/.ssh/id_ed25519.pub)"}
	}
	for _, file := range strings.Split(*f.sshKey, ",") {
		keys, err := readKeys(file)
		if err != nil {
			return s, err
		}
		p.SSHKeys = append(p.SSHKeys, keys...)
	}
	if *f.diskSize != "" {
		n, err := storage.ParseSize(*f.diskSize)
		if err != nil {
			return s, fmt.Errorf("--disk-size: %w", err)
		}
		p.DiskSizeB = n
	}
	if *f.userData != "" {
		b, err := os.ReadFile(*f.userData)
		if err != nil {
			return s, fmt.Errorf("--user-data: %w: give a readable cloud-init user-data file", err)
		}
		p.UserData = string(b)
	}
	return s, nil
}

// readKeys reads the public keys of an authorized_keys-style file.
func readKeys(file string) ([]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--ssh-key %s: %w: give a readable OpenSSH public key file (ssh-keygen makes one, ~/.ssh/id_ed25519.pub)", file, err)
	}
	var keys []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if err := config.ValidSSHKey(l); err != nil {
			return nil, fmt.Errorf("--ssh-key %s: %v", file, err)
		}
		keys = append(keys, l)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("--ssh-key %s: no public key in it: give the .pub file", file)
	}
	return keys, nil
}

// waitAgent waits until the domain's guest agent answers, showing what
// it waits for.
func waitAgent(e *env, name string, timeout time.Duration) (api.GuestInfo, error) {
	deadline := time.Now().Add(timeout)
	start := time.Now()
	for {
		g, err := e.client().GuestInfo(ctx(), name)
		if err == nil {
			fmt.Fprintf(e.stderr, "%s is up (guest agent answered after %s)\n", name, time.Since(start).Round(time.Second))
			return g, nil
		}
		if !errors.Is(err, api.ErrUnavailable) || time.Now().After(deadline) {
			return g, fmt.Errorf("waiting for %s's guest agent: %w", name, err)
		}
		time.Sleep(2 * time.Second)
	}
}

// runExec: exec NAME -- CMD [ARG...]
func runExec(e *env, args []string) error {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	timeout := fs.Int("timeout", 60, "seconds the command may run")
	stdin := fs.Bool("i", false, "pass this command's standard input to it")
	// Everything after "--" is the guest's command, its flags included.
	var argv []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, argv = args[:i], args[i+1:]
	}
	pos, err := parse(fs, args, 1, -1)
	if err != nil {
		return err
	}
	req := api.GuestExecRequest{Argv: append(pos[1:], argv...), TimeoutSec: *timeout}
	if len(req.Argv) == 0 {
		return usageError{"exec NAME -- CMD [ARG...]: no command"}
	}
	if *stdin {
		if req.Stdin, err = io.ReadAll(e.stdin); err != nil {
			return err
		}
	}
	r, err := e.client().GuestExec(ctx(), pos[0], req)
	if err != nil {
		return err
	}
	e.stdout.Write(r.Stdout)
	e.stderr.Write(r.Stderr)
	if r.ExitCode != 0 {
		return exitError{code: min(r.ExitCode, 125)}
	}
	return nil
}

// runSetPassword: set-password NAME USER (the password from the
// terminal, or the first line of standard input).
func runSetPassword(e *env, args []string) error {
	fs := flag.NewFlagSet("set-password", flag.ContinueOnError)
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	var pw string
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(e.stderr, "New password for %s on %s: ", pos[1], pos[0])
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		if err != nil {
			return err
		}
		pw = string(b)
	} else {
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("set-password: no password on standard input")
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if pw == "" {
		return usageError{"set-password: the password is empty"}
	}
	if err := e.client().SetGuestPassword(ctx(), pos[0], api.GuestPasswordRequest{User: pos[1], Password: pw}); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "Password of %s set on %s\n", pos[1], pos[0])
	return nil
}
