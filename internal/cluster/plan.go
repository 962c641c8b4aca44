package cluster

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ringfence/ringfence/internal/api"
)

// HADomain is an HA domain where it runs and what it needs of a host.
type HADomain struct {
	Host string
	Need Need
}

// PlanHA is the N+1 plan (`cluster plan`): for each host that can run
// domains, whether its HA domains could all be restarted on the other
// live hosts' free figures if it failed, placed as a survivor would
// (first-fit decreasing, each on the host with the most free memory
// that fits).
func PlanHA(rooms []Room, doms []HADomain) api.HAPlan {
	plan := api.HAPlan{OK: true, Hosts: []api.HAPlanHost{}}
	for _, failed := range rooms {
		if !failed.Alive || failed.Witness {
			continue
		}
		ph := planHost(failed.Host, rooms, doms)
		plan.OK = plan.OK && ph.OK
		plan.Hosts = append(plan.Hosts, ph)
	}
	return plan
}

// planHost places failed's HA domains on the others.
func planHost(failed string, rooms []Room, doms []HADomain) api.HAPlanHost {
	ph := api.HAPlanHost{Host: failed, HA: []string{}, OK: true}
	var mine []Need
	for _, d := range doms {
		if d.Host == failed {
			mine = append(mine, d.Need)
			ph.HA = append(ph.HA, d.Need.Name)
			ph.NeedMiB += d.Need.MemMiB
			ph.NeedVCPUs += d.Need.VCPUs
		}
	}
	if len(mine) == 0 {
		return ph
	}
	sort.SliceStable(mine, func(i, j int) bool { return mine[i].MemMiB > mine[j].MemMiB })
	left := make([]Room, 0, len(rooms))
	for _, r := range rooms {
		if r.Host != failed {
			left = append(left, r)
		}
	}
	ph.Placement = map[string]string{}
	var lost []string
	for _, n := range mine {
		order, err := Place(n, left)
		if err != nil {
			lost = append(lost, fmt.Sprintf("%s (%d MiB, %d vCPUs)", n.Name, n.MemMiB, n.VCPUs))
			continue
		}
		ph.Placement[n.Name] = order[0]
		for i := range left {
			if left[i].Host == order[0] {
				left[i].FreeMiB -= n.MemMiB
				left[i].VCPUsFree -= n.VCPUs
			}
		}
	}
	if len(lost) > 0 {
		ph.OK = false
		ph.Why = fmt.Sprintf("if %s failed, %s would fit on no other host (%s)", failed, strings.Join(lost, ", "), figures(rooms, failed))
	}
	return ph
}

// figures are the other hosts' free figures, as a refusal gives them.
func figures(rooms []Room, except string) string {
	var out []string
	for _, r := range rooms {
		switch {
		case r.Host == except:
		case !r.Alive:
			out = append(out, r.Host+" down")
		case r.Witness:
			out = append(out, r.Host+" witness")
		case r.Excluded:
			out = append(out, r.Host+" evacuated")
		default:
			out = append(out, fmt.Sprintf("%s %d MiB, %d vCPUs free", r.Host, r.FreeMiB, r.VCPUsFree))
		}
	}
	if len(out) == 0 {
		return "no other host"
	}
	return strings.Join(out, "; ")
}
