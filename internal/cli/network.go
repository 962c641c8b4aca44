package cli

import (
	"flag"
	"fmt"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
)

// runNetwork: network create NAME [--bridge BR] [--uplink IF] | list | show NAME | delete NAME
func runNetwork(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"expected create, list, show, leases or delete"}
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("network "+sub, flag.ContinueOnError)
	switch sub {
	case "create":
		bridge := fs.String("bridge", "", "bridge to use (made if missing; default: the network's name)")
		uplink := fs.String("uplink", "", "host interface put on the bridge, so guests share its segment (as xenbr0 with eth0)")
		nat := fs.Bool("nat", false, "a private network: DHCP, DNS and masquerading out of the host (needs --subnet)")
		subnet := fs.String("subnet", "", "the NAT network's IPv4 range, e.g. 10.77.0.0/24 (the gateway is its first address)")
		tenant := fs.String("tenant", "", "the tenant that owns the network (only its domains may use it)")
		shared := fs.Bool("shared", false, "a host network every tenant's domains may use too")
		clusterWide := fs.Bool("cluster", false, "declare it cluster-wide: every host of the cluster makes the same bridge and uplink")
		pos, err := parse(fs, args, 1, 1)
		if err != nil {
			return err
		}
		if *nat && *subnet == "" {
			return usageError{"--nat needs --subnet, e.g. --subnet 10.77.0.0/24"}
		}
		n, err := e.client().CreateNetwork(ctx(), api.Network{Name: pos[0], Bridge: *bridge, Uplink: *uplink, NAT: *nat, Subnet: *subnet, Tenant: *tenant, Shared: *shared, Cluster: *clusterWide})
		if err != nil {
			return err
		}
		extra := ""
		switch {
		case n.NAT:
			extra = fmt.Sprintf(" (NAT %s, gateway, DHCP and DNS at %s)", n.Subnet, n.Gateway)
		case n.Uplink != "":
			extra = " (uplink " + n.Uplink + ")"
		}
		fmt.Fprintf(e.stderr, "Created network %s on bridge %s%s\n", n.Name, n.Bridge, extra)
		return nil
	case "list":
		return listTable(e, fs, args, 0, func([]string) ([]api.Network, error) { return e.client().Networks(ctx()) },
			"NAME\tTENANT\tSCOPE\tBRIDGE\tKIND\tUPLINK/SUBNET\tPORTS", func(n api.Network) string {
				kind, where := "bridged", n.Uplink
				if n.NAT {
					kind, where = "nat", n.Subnet
				}
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", n.Name, ownerColumn(n.Tenant, n.Shared), scopeColumn(n.Cluster), n.Bridge, kind, where, strings.Join(n.Ports, ","))
			})
	case "leases":
		return listTable(e, fs, args, 1, func(pos []string) ([]api.Lease, error) { return e.client().Leases(ctx(), pos[0]) },
			"IP\tMAC\tDOMAIN\tSTATE\tEXPIRES", func(l api.Lease) string {
				state := "gone"
				if l.Active {
					state = "running"
				}
				if l.Fixed {
					state += ",fixed"
				}
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%s", l.IP, l.MAC, l.Domain, state, l.Expires.Local().Format("2006-01-02 15:04:05"))
			})
	case "show":
		pos, err := parse(fs, args, 1, 1)
		if err != nil {
			return err
		}
		n, err := e.client().Network(ctx(), pos[0])
		if err != nil {
			return err
		}
		return printJSON(e.stdout, n)
	case "delete":
		pos, err := parse(fs, args, 1, 1)
		if err != nil {
			return err
		}
		return e.client().DeleteNetwork(ctx(), pos[0])
	}
	return usageError{"unknown network command " + sub}
}

// runNetworkAttach: network-attach NAME [VIFSPEC] (xl)
func runNetworkAttach(e *env, args []string) error {
	fs := flag.NewFlagSet("network-attach", flag.ContinueOnError)
	pos, err := parse(fs, args, 1, 2)
	if err != nil {
		return err
	}
	req := api.NetworkRequest{}
	if len(pos) == 2 {
		req.Spec = pos[1]
	}
	return e.client().Action(ctx(), pos[0], "network-attach", req)
}

func runNetworkList(e *env, args []string) error {
	fs := flag.NewFlagSet("network-list", flag.ContinueOnError)
	return listTable(e, fs, args, 1, func(pos []string) ([]api.NetworkDevice, error) { return e.client().Vifs(ctx(), pos[0]) },
		"IDX\tMAC\tBRIDGE\tTAP\tMODEL\tSLOT\tIP", func(n api.NetworkDevice) string {
			slot := n.Port
			if slot == "" {
				slot = "boot"
			}
			ip := strings.Join(n.Addresses, ",")
			if ip == "" {
				ip = "-"
			}
			return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%s", n.Index, n.MAC, n.Bridge, n.Tap, n.Model, slot, ip)
		})
}

// scopeColumn says whether a network or pool is this host's or declared
// cluster-wide.
func scopeColumn(clusterWide bool) string {
	if clusterWide {
		return "cluster"
	}
	return "host"
}
