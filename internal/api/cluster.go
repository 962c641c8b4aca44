package api

import "time"

// ClusterInitRequest makes this host the first of a cluster (POST
// /1.0/cluster/init); an untrusted host is made the trust authority first.
type ClusterInitRequest struct {
	PeerName string   `json:"peer_name,omitempty"`
	Names    []string `json:"names,omitempty"`
}

// ClusterJoinRequest joins this host to the cluster of the token's
// authority (POST /1.0/cluster/join). A host already trusted by that
// authority (an earlier `host join`) joins without a token.
type ClusterJoinRequest struct {
	Token    string   `json:"token,omitempty"`
	PeerName string   `json:"peer_name,omitempty"`
	Names    []string `json:"names,omitempty"`
	// Witness: an etcd member only, never given domains (the third vote
	// of a two-host site).
	Witness bool `json:"witness,omitempty"`
}

// ClusterStatus is `cluster status`: this host's part and every host's.
type ClusterStatus struct {
	Name string `json:"name"`
	// Etcd is this host's part in etcd: member (an embedded voting
	// member), learner (catching up), client (reaches the members) or
	// external (--etcd-endpoints).
	Etcd      string        `json:"etcd"`
	State     string        `json:"state"` // starting, ready, or why not
	Endpoints []string      `json:"endpoints"`
	Hosts     []ClusterHost `json:"hosts"`
	// HA is this host's fencing: its HA guests, its fence deadline, its
	// guard process and watchdog.
	HA *HAStatus `json:"ha,omitempty"`
}

// HAStatus is this host's side of HA (`cluster status`).
type HAStatus struct {
	Guests []string `json:"guests"` // HA domains running here (owned)
	// DeadlineInSec: seconds left before this host fences its HA guests
	// unless a lease renewal succeeds (absent: no HA guest, no fence).
	DeadlineInSec *float64 `json:"deadline_in_sec,omitempty"`
	GuardPID      int      `json:"guard_pid,omitempty"`
	Watchdog      string   `json:"watchdog"` // e.g. "none: /dev/watchdog absent"
	Fenced        []string `json:"fenced,omitempty"`
}

// HARequest turns a domain's HA on or off (PUT /1.0/domains/{name}/ha).
type HARequest struct {
	On bool `json:"on"`
}

// HAPlan is `cluster plan`: for each host, whether its HA domains could
// be restarted on the others if it failed (N+1).
type HAPlan struct {
	OK    bool         `json:"ok"`
	Hosts []HAPlanHost `json:"hosts"`
}

// HAPlanHost is one host's failure in the plan.
type HAPlanHost struct {
	Host      string            `json:"host"`
	HA        []string          `json:"ha"`                  // its HA domains
	NeedMiB   int               `json:"need_mib"`            // their memory with QEMU overhead
	NeedVCPUs int               `json:"need_vcpus"`          // their vCPUs
	Placement map[string]string `json:"placement,omitempty"` // domain -> survivor
	OK        bool              `json:"ok"`
	Why       string            `json:"why,omitempty"` // what does not fit, with the figures
}

// ClusterHost is one host of the cluster.
type ClusterHost struct {
	Name    string    `json:"name"`
	Addr    string    `json:"addr"`
	Etcd    string    `json:"etcd"`
	Witness bool      `json:"witness,omitempty"`
	Alive   bool      `json:"alive"` // its lease is live
	Joined  time.Time `json:"joined"`
	Voting  bool      `json:"voting,omitempty"` // a voting etcd member
	Leader  bool      `json:"leader,omitempty"` // etcd's leader, as its members last said
	// Excluded: evacuated, given no domains until `host resume`.
	Excluded bool `json:"excluded,omitempty"`
}

// EvacuateRequest empties a host of the cluster (POST
// /1.0/cluster/hosts/{peer}/evacuate) by live migration.
type EvacuateRequest struct {
	Parallel int `json:"parallel,omitempty"` // migrations at once (0: 2)
}

// Evacuation is where each domain of an evacuated host went.
type Evacuation struct {
	Host  string          `json:"host"`
	Moved []EvacuatedMove `json:"moved"`
}

// EvacuatedMove is one domain moved off an evacuated host.
type EvacuatedMove struct {
	Domain string `json:"domain"`
	To     string `json:"to"`
}

// ForwardCall is a verb on a domain another host of the cluster owns,
// forwarded to it over the peer channel (POST /1.0/peer/forward).
type ForwardCall struct {
	Method string `json:"method"`
	Path   string `json:"path"` // under /1.0, with its query
	Body   []byte `json:"body,omitempty"`
	Role   string `json:"role"`   // the caller's role on the first host
	Caller string `json:"caller"` // who, for the owner's audit
}

// ForwardReply is the owner's answer, status and body as they were.
type ForwardReply struct {
	Status int    `json:"status"`
	Body   []byte `json:"body"`
}
