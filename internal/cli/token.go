package cli

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// runToken is `ringfence token create|list|revoke`: the remote API's
// tokens.
func runToken(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"expected create, list or revoke"}
	}
	switch args[0] {
	case "create":
		return tokenCreate(e, args[1:])
	case "list":
		return tokenList(e, args[1:])
	case "revoke":
		fs := flag.NewFlagSet("token revoke", flag.ContinueOnError)
		pos, err := parse(fs, args[1:], 1, 1)
		if err != nil {
			return err
		}
		t, err := e.client().RevokeToken(ctx(), pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "Token %s revoked at %s\n", t.Name, t.Revoked.Local().Format(time.RFC3339))
		return nil
	}
	return usageError{fmt.Sprintf("unknown token command %q", args[0])}
}

func tokenCreate(e *env, args []string) error {
	fs := flag.NewFlagSet("token create", flag.ContinueOnError)
	role := fs.String("role", "", "admin, operator, auditor, tenant-admin or tenant-user")
	tenant := fs.String("tenant", "", "the tenant (the tenant roles only)")
	expires := fs.String("expires", "", "lifetime: 30d, 12h, 90m (default: no expiry)")
	asJSON := fs.Bool("json", false, "print JSON")
	pwStdin := fs.Bool("password-stdin", false, "read a web admin sign-in password (user NAME) from stdin's first line")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *role == "" {
		return usageError{"--role is required"}
	}
	var password string
	if *pwStdin {
		// One line, never an argument (every host user reads argv).
		line, _ := bufio.NewReader(io.LimitReader(e.stdin, 1024)).ReadString('\n')
		if password = strings.TrimRight(line, "\r\n"); password == "" {
			return usageError{"--password-stdin: no password on stdin"}
		}
	}
	life, err := parseLifetime(*expires)
	if err != nil {
		return usageError{err.Error()}
	}
	t, err := e.client().CreateToken(ctx(), api.APITokenRequest{Name: pos[0], Role: *role, Tenant: *tenant, ExpiresSec: int64(life / time.Second), Password: password})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, t)
	}
	fmt.Fprintln(e.stdout, t.Secret)
	fmt.Fprintf(e.stderr, "Token %s (%s) created; its secret is shown only now: keep it safe.\n", t.Name, roleOf(t.APIToken))
	return nil
}

// parseLifetime reads 30d, 12h, 90m ("" = none).
func parseLifetime(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("--expires %q: want a positive lifetime such as 30d, 12h or 90m", s)
	}
	return d, nil
}

func roleOf(t api.APIToken) string {
	if t.Tenant != "" {
		return t.Role + ", tenant " + t.Tenant
	}
	return t.Role
}

func tokenList(e *env, args []string) error {
	fs := flag.NewFlagSet("token list", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	ts, err := e.client().Tokens(ctx())
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, ts)
	}
	when := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Local().Format("2006-01-02 15:04")
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tEXPIRES\tLAST USED\tSTATUS")
	now := time.Now()
	for _, t := range ts {
		status := "active"
		switch {
		case !t.Revoked.IsZero():
			status = "revoked " + when(t.Revoked)
		case !t.Expires.IsZero() && !now.Before(t.Expires):
			status = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, roleOf(t), when(t.Created), when(t.Expires), when(t.LastUsed), status)
	}
	return tw.Flush()
}
