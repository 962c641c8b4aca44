package cli

import (
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/storage"
)

// runTenant is `ringfence tenant create|list|show|set|delete`: the
// host's tenants and their quotas.
func runTenant(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"expected create, list, show, set or delete"}
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("tenant "+sub, flag.ContinueOnError)
	switch sub {
	case "create", "set":
		return tenantQuota(e, fs, sub, args)
	case "list":
		return listTable(e, fs, args, 0, func([]string) ([]api.Tenant, error) { return e.client().Tenants(ctx()) },
			"NAME\tMEMORY MiB\tVCPUS\tDISK\tTRANSFER\tDOMAINS", func(t api.Tenant) string {
				u, q := t.Usage, t.Quota
				return fmt.Sprintf("%s\t%d/%d\t%d/%d\t%s/%s\t%s/%s\t%d", t.Name, u.MemoryMiB, q.MemoryMiB, u.VCPUs, q.VCPUs,
					size(u.DiskBytes), size(q.DiskBytes), size(u.TransferBytes), transferQuota(q.TransferBytes), len(u.Domains))
			})
	case "show":
		asJSON := fs.Bool("json", false, "print JSON")
		pos, err := parse(fs, args, 1, 1)
		if err != nil {
			return err
		}
		t, err := e.client().Tenant(ctx(), pos[0])
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, t)
		}
		return showTenant(e, t)
	case "delete":
		pos, err := parse(fs, args, 1, 1)
		if err != nil {
			return err
		}
		if err := e.client().DeleteTenant(ctx(), pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "Deleted tenant %s; its reservation went back to the host\n", pos[0])
		return nil
	}
	return usageError{"unknown tenant command " + sub}
}

// tenantQuota is `tenant create NAME` and `tenant set NAME`: the quota
// flags (set changes only those given).
func tenantQuota(e *env, fs *flag.FlagSet, sub string, args []string) error {
	mem := fs.String("memory", "", "memory reserved, guest RAM + QEMU overhead as the ledger counts it: 2048 (MiB), 512m, 4g")
	vcpus := fs.Int("vcpus", 0, "vCPUs reserved")
	disk := fs.String("disk", "", "virtual size its volumes and disks may reach: 20G")
	transfer := fs.String("transfer", "", "network transfer its domains may move in a calendar month (rx + tx): 1T; 0 = no quota")
	action := fs.String("transfer-action", "", "what crossing --transfer does to its domains: notify (default), pause, throttle:RATE (throttle:10Mbit)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	var u api.TenantUpdate
	var perr error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "memory":
			n, err := parseQuotaMiB(*mem)
			perr = firstErr(perr, err)
			u.MemoryMiB = &n
		case "vcpus":
			u.VCPUs = vcpus
		case "disk":
			n, err := parseQuotaBytes("--disk", *disk)
			perr = firstErr(perr, err)
			u.DiskBytes = &n
		case "transfer":
			n, err := parseQuotaBytes("--transfer", *transfer)
			perr = firstErr(perr, err)
			u.TransferBytes = &n
		case "transfer-action":
			u.TransferAction = action
		}
	})
	if perr != nil {
		return perr
	}
	var t api.Tenant
	if sub == "create" {
		q := api.TenantQuota{}
		set(&q.MemoryMiB, u.MemoryMiB)
		set(&q.VCPUs, u.VCPUs)
		set(&q.DiskBytes, u.DiskBytes)
		set(&q.TransferBytes, u.TransferBytes)
		set(&q.TransferAction, u.TransferAction)
		t, err = e.client().CreateTenant(ctx(), api.TenantRequest{Name: pos[0], Quota: q})
	} else {
		if u == (api.TenantUpdate{}) {
			return usageError{"tenant set NAME needs at least one of --memory, --vcpus, --disk, --transfer, --transfer-action"}
		}
		t, err = e.client().UpdateTenant(ctx(), pos[0], u)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, t)
	}
	verb := map[string]string{"create": "Created", "set": "Changed"}[sub]
	fmt.Fprintf(e.stderr, "%s tenant %s: %d MiB and %d vCPUs reserved, disk %s, transfer %s\n", verb, t.Name, t.Quota.MemoryMiB, t.Quota.VCPUs,
		size(t.Quota.DiskBytes), transferQuota(t.Quota.TransferBytes))
	return nil
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// parseQuotaMiB reads a memory quota: MiB without a suffix (as memory=
// in a domain file), or with k, m, g, t.
func parseQuotaMiB(s string) (int, error) {
	if s == "" {
		return 0, usageError{"--memory needs a size: 2048 (MiB), 512m, 4g"}
	}
	if s == "0" {
		return 0, nil
	}
	if last := s[len(s)-1]; last >= '0' && last <= '9' {
		s += "m"
	}
	return parseMemMiB(s)
}

// parseQuotaBytes reads a disk or transfer quota (0: none).
func parseQuotaBytes(flagName, s string) (int64, error) {
	if s == "0" {
		return 0, nil
	}
	n, err := storage.ParseSize(s)
	if err != nil {
		return 0, usageError{fmt.Sprintf("%s %q: want a size such as 20G or 1T", flagName, s)}
	}
	return n, nil
}

// transferQuota shows a transfer quota ("-": none).
func transferQuota(b int64) string {
	if b == 0 {
		return "-"
	}
	return size(b)
}

// showTenant prints one tenant: quota, what it holds, what it owns.
func showTenant(e *env, t api.Tenant) error {
	w := tabwriter.NewWriter(e.stdout, 0, 0, 1, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(w, "%s\t: %v\n", k, v) }
	u, q := t.Usage, t.Quota
	row("tenant", t.Name)
	row("created", t.Created.Local().Format("2006-01-02 15:04:05"))
	row("memory", fmt.Sprintf("%d of %d MiB reserved (guest RAM + QEMU overhead)", u.MemoryMiB, q.MemoryMiB))
	row("vcpus", fmt.Sprintf("%d of %d reserved", u.VCPUs, q.VCPUs))
	row("disk", fmt.Sprintf("%s of %s (virtual size of its volumes and disks)", size(u.DiskBytes), size(q.DiskBytes)))
	action := q.TransferAction
	if action == "" {
		action = "notify"
	}
	row("transfer", fmt.Sprintf("%s of %s this month (vif rx+tx; over it: %s)", size(u.TransferBytes), transferQuota(q.TransferBytes), action))
	for _, o := range []struct {
		k     string
		names []string
	}{{"domains", u.Domains}, {"networks", u.Networks}, {"pools", u.Pools}, {"tokens", u.Tokens}} {
		v := strings.Join(o.names, ", ")
		if v == "" {
			v = "-"
		}
		row(o.k, v)
	}
	return w.Flush()
}

// tenantColumn is a list's TENANT cell ("-": the host's own).
func tenantColumn(t string) string {
	if t == "" {
		return "-"
	}
	return t
}

// ownerColumn is the TENANT cell of a pool or network: its tenant, or
// the host's ("-"), "shared" when every tenant may use it.
func ownerColumn(t string, shared bool) string {
	if shared {
		return "shared"
	}
	return tenantColumn(t)
}
