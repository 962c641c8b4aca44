package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/ringfence/ringfence/internal/client"
)

// Remotes: daemons reached over their API listener (serve --api-listen)
// with a token, each with the certificate pinned when it was added. The
// unix socket is the remote "local", the default.

// localRemote names the unix socket.
const localRemote = "local"

// remote is one entry of the client's config.
type remote struct {
	URL         string `json:"url"`
	Token       string `json:"token"`
	Fingerprint string `json:"fingerprint"` // the server certificate's SHA-256, hex
	// ClientCert: the client's certificate (client.crt), bound to a
	// token, stands for it; Token is then empty.
	ClientCert bool `json:"client_cert,omitempty"`
}

// remotesFile is ~/.config/ringfence/remotes.json (or $RINGFENCE_CONFIG).
type remotesFile struct {
	Current string            `json:"current,omitempty"`
	Remotes map[string]remote `json:"remotes"`
}

// errNoConfigDir: neither $RINGFENCE_CONFIG, $XDG_CONFIG_HOME nor $HOME
// is set (a systemd unit's ExecStop, cron).
var errNoConfigDir = errors.New("no config dir for the remotes (set RINGFENCE_CONFIG or HOME)")

func remotesPath() (string, error) {
	if p := os.Getenv("RINGFENCE_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("%w: %v", errNoConfigDir, err)
	}
	return filepath.Join(dir, "ringfence", "remotes.json"), nil
}

// loadRemotes reads the remotes; with no config dir there are none (the
// verbs use the local socket), so root's services need no HOME.
func loadRemotes() (*remotesFile, error) {
	rf := &remotesFile{Remotes: map[string]remote{}}
	p, err := remotesPath()
	if errors.Is(err, errNoConfigDir) {
		return rf, nil
	} else if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return rf, nil
	} else if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, rf); err != nil {
		return nil, fmt.Errorf("%s: %v", p, err)
	}
	if rf.Remotes == nil {
		rf.Remotes = map[string]remote{}
	}
	return rf, nil
}

// save writes the file whole (0600: it holds tokens), renamed into place.
func (rf *remotesFile) save() error {
	p, err := remotesPath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(rf, "", "  ")
	f, err := os.CreateTemp(filepath.Dir(p), ".remotes-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p) // CreateTemp made it 0600
}

// connect picks the daemon the verbs talk to: --remote NAME (or
// RINGFENCE_REMOTE), else the socket if one was named, else the current
// remote of the config, else the socket.
func (e *env) connect() error {
	name := e.remoteName
	if name == "" && !e.socketGiven {
		rf, err := loadRemotes()
		if err != nil {
			return err
		}
		name = rf.Current
	}
	if name == "" || name == localRemote {
		return nil
	}
	rf, err := loadRemotes()
	if err != nil {
		return err
	}
	r, ok := rf.Remotes[name]
	if !ok {
		return fmt.Errorf("no remote %q (`ringfence remote list`)", name)
	}
	c, err := remoteClient(r)
	if err != nil {
		return fmt.Errorf("remote %s: %w", name, err)
	}
	e.remote = c
	return nil
}

// runRemote is `ringfence remote add|list|remove|switch`.
func runRemote(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"expected add, list, remove or switch"}
	}
	switch args[0] {
	case "add":
		return remoteAdd(e, args[1:])
	case "list":
		return remoteList(e, args[1:])
	case "remove", "switch":
		fs := flag.NewFlagSet("remote "+args[0], flag.ContinueOnError)
		pos, err := parse(fs, args[1:], 1, 1)
		if err != nil {
			return err
		}
		return remoteSet(e, args[0], pos[0])
	}
	return usageError{fmt.Sprintf("unknown remote command %q", args[0])}
}

// remoteAdd fetches the remote's certificate, has its fingerprint
// accepted, checks the token works over the pinned connection, and only
// then saves the remote.
func remoteAdd(e *env, args []string) error {
	fs := flag.NewFlagSet("remote add", flag.ContinueOnError)
	token := fs.String("token", "", "the API token (`ringfence token create` on the remote's host)")
	accept := fs.Bool("accept-certificate", false, "pin the certificate the remote shows without asking (scripts)")
	useCert := fs.Bool("client-cert", false, "bind this client's certificate to the token and keep the certificate, not the token")
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	name, url := pos[0], pos[1]
	if name == localRemote || !validRemoteName(name) {
		return usageError{fmt.Sprintf("%q cannot name a remote: use letters, digits, '.', '_', '-' (and not %q)", name, localRemote)}
	}
	if *token == "" {
		return usageError{"--token is required"}
	}
	rf, err := loadRemotes()
	if err != nil {
		return err
	}
	if _, dup := rf.Remotes[name]; dup {
		return fmt.Errorf("remote %q exists: `ringfence remote remove %s` first", name, name)
	}
	cert, err := client.FetchCertificate(context.Background(), url)
	if err != nil {
		return err
	}
	fp := client.Fingerprint(cert)
	fmt.Fprintf(e.stderr, "Certificate of %s (%s):\n  SHA-256 %s\n", url, cert.Subject.CommonName, fp)
	if !*accept && !confirm(e, "Pin this certificate and trust it for this remote? (y/N) ") {
		return errors.New("certificate not accepted: nothing saved")
	}
	c, err := client.NewRemote(url, *token, fp)
	if err != nil {
		return err
	}
	if _, err := c.List(context.Background()); err != nil {
		return fmt.Errorf("the remote refused the token (nothing saved): %w", err)
	}
	entry := remote{URL: url, Token: *token, Fingerprint: fp}
	if *useCert {
		if err := bindClientCert(c, url, fp); err != nil {
			return err
		}
		entry.Token, entry.ClientCert = "", true
	}
	rf.Remotes[name] = entry
	if err := rf.save(); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "Remote %s added; use it with `ringfence --remote %s VERB` or `ringfence remote switch %s`\n", name, name, name)
	return nil
}

func validRemoteName(s string) bool {
	return s != "" && len(s) <= 64 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == "" && s[0] != '.' && s[0] != '-'
}

// confirm asks a yes/no question on stdin.
func confirm(e *env, q string) bool {
	fmt.Fprint(e.stderr, q)
	line, _ := bufio.NewReader(e.stdin).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes"
}

func remoteList(e *env, args []string) error {
	fs := flag.NewFlagSet("remote list", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON (without the tokens)")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	rf, err := loadRemotes()
	if err != nil {
		return err
	}
	cur := rf.Current
	if cur == "" {
		cur = localRemote
	}
	names := []string{}
	for n := range rf.Remotes {
		names = append(names, n)
	}
	sort.Strings(names)
	if *asJSON {
		out := []map[string]any{{"name": localRemote, "url": "unix://" + e.socket, "current": cur == localRemote}}
		for _, n := range names {
			r := rf.Remotes[n]
			out = append(out, map[string]any{"name": n, "url": r.URL, "fingerprint": r.Fingerprint, "current": cur == n})
		}
		return printJSON(e.stdout, out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tURL\tCERTIFICATE SHA-256\tCURRENT")
	mark := func(n string) string {
		if n == cur {
			return "*"
		}
		return ""
	}
	fmt.Fprintf(tw, "%s\tunix://%s\t-\t%s\n", localRemote, e.socket, mark(localRemote))
	for _, n := range names {
		r := rf.Remotes[n]
		fmt.Fprintf(tw, "%s\t%s\t%.16s...\t%s\n", n, r.URL, r.Fingerprint, mark(n))
	}
	return tw.Flush()
}

// remoteSet removes a remote or makes it the current one.
func remoteSet(e *env, op, name string) error {
	rf, err := loadRemotes()
	if err != nil {
		return err
	}
	if _, ok := rf.Remotes[name]; !ok && name != localRemote {
		return fmt.Errorf("no remote %q (`ringfence remote list`)", name)
	}
	switch {
	case op == "switch" && name == localRemote:
		rf.Current = ""
	case op == "switch":
		rf.Current = name
	case name == localRemote:
		return errors.New("the local socket cannot be removed")
	default:
		delete(rf.Remotes, name)
		if rf.Current == name {
			rf.Current = ""
		}
	}
	return rf.save()
}
