package daemon

import (
	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/peer"
)

// routeDocs is the reference's table: one line per route of routes(),
// keyed "METHOD PATH" (PATH under /1.0, as in the route table). in and
// out are zero values of the request body and the reply (nil: none;
// empty{}: an empty object); reply is how the reply comes. Add a route's
// line here, then `go test ./internal/daemon -run TestOpenAPI -update`
// rewrites docs/openapi.json.
var routeDocs = map[string]routeDoc{
	// The API itself, the audit log, metrics.
	"GET ":         {"The API's version, Ringfence's release and the extensions served", nil, api.APIInfo{}, asJSON, ""},
	"GET /audit":   {"Audit records: after ?since=SEQ or from ?since_time=T (oldest first), else the newest; before ?until=T, of ?principal, of ?tenant's principals, about ?domain; at most ?limit=N", nil, []api.AuditRecord{}, asJSON, "since,since_time,until,principal,tenant,domain,limit"},
	"GET /metrics": {"The host's and the domains' figures in the Prometheus text format", nil, nil, asText, ""},

	// The event stream.
	"GET /events": {"Events after ?since=SEQ as NDJSON (a WebSocket on an upgrade): lifecycle, operations, host", nil, api.Event{}, asNDJSON, "since"},

	// Operations: the long jobs.
	"GET /operations":           {"The operations the caller may see", nil, []api.Operation{}, asJSON, ""},
	"GET /operations/{op}":      {"One operation", nil, api.Operation{}, asJSON, ""},
	"GET /operations/{op}/wait": {"Wait until the operation ends or ?timeout=SECONDS passes", nil, api.Operation{}, asJSON, "timeout"},
	"DELETE /operations/{op}":   {"Cancel a running operation", nil, api.Operation{}, asJSON, ""},

	// API tokens.
	"POST /tokens":              {"Create an API token (its secret is shown once)", api.APITokenRequest{}, api.APITokenCreated{}, asJSON, ""},
	"GET /tokens":               {"The API tokens (no secrets)", nil, []api.APIToken{}, asJSON, ""},
	"POST /tokens/certificates": {"Bind a client certificate to the caller's token", api.APICertRequest{}, empty{}, asJSON, ""},
	"DELETE /tokens/{apitoken}": {"Revoke an API token", nil, api.APIToken{}, asJSON, ""},

	// The host.
	"GET /host":                           {"The host: CPUs, memory, accelerator, QEMU, the ledger", nil, api.HostInfo{}, asJSON, ""},
	"GET /stats":                          {"Every running domain's figures (top): a tenant's own, with its quota as the memory", nil, api.Stats{}, asJSON, ""},
	"POST /host/shutdown":                 {"End (or save) every domain before the host goes down: 202 and the Operation (its result a HostShutdownResult)", api.HostShutdownRequest{}, api.Operation{}, asJSON, ""},
	"GET /host/log":                       {"The daemon's recent log", nil, nil, asText, ""},
	"POST /host/trust":                    {"Make this host a trust authority (or an offline copy)", api.TrustRequest{}, api.PeerStatus{}, asJSON, ""},
	"POST /host/tokens":                   {"A single-use join token (authority)", api.TokenRequest{}, api.PeerToken{}, asJSON, ""},
	"POST /host/join":                     {"Join the authority named in a token", api.JoinRequest{}, api.PeerStatus{}, asJSON, ""},
	"POST /host/renew":                    {"A new key and certificate for this host", nil, api.PeerStatus{}, asJSON, ""},
	"GET /host/peers":                     {"The trusted hosts", nil, api.PeerList{}, asJSON, ""},
	"POST /host/peers/{peer}/revoke":      {"Revoke a host's trust (authority)", nil, api.PeerList{}, asJSON, ""},
	"POST /cluster/init":                  {"Make this host the first of a cluster (its etcd member)", api.ClusterInitRequest{}, api.ClusterStatus{}, asJSON, ""},
	"POST /cluster/join":                  {"Join the cluster of this host's trust authority", api.ClusterJoinRequest{}, api.ClusterStatus{}, asJSON, ""},
	"GET /cluster":                        {"This host's cluster: its etcd part and every host", nil, api.ClusterStatus{}, asJSON, ""},
	"POST /cluster/hosts/{peer}/evacuate": {"Live-migrate every domain off a host of the cluster, and exclude it", api.EvacuateRequest{}, api.Operation{}, asJSON, ""},
	"POST /cluster/hosts/{peer}/resume":   {"Let an evacuated host take domains again", nil, api.ClusterStatus{}, asJSON, ""},
	"GET /cluster/plan":                   {"The N+1 plan: could each host's HA domains restart on the others", nil, api.HAPlan{}, asJSON, ""},
	"PUT /domains/{name}/ha":              {"Turn a domain's HA (restart on a surviving host) on or off", api.HARequest{}, api.Domain{}, asJSON, ""},
	"POST /cluster/leave":                 {"Take this host out of its cluster (a live client host takes its etcd vote)", nil, nil, asJSON, ""},
	"POST /peer/relay":                    {"A peer relays a stream of a domain this host has (console, VNC, a download): the connection is upgraded and carries the caller's request", nil, nil, asJSON, ""},
	"POST /cluster/hosts/{peer}/member":   {"Make a client host of the cluster an etcd member (when it has fewer than three)", nil, api.ClusterStatus{}, asJSON, ""},

	// Peer hosts, on the peer listener.
	"POST /peer/join":            {"A joining host's call with its token (anonymous)", peer.JoinCall{}, peer.JoinReply{}, asJSON, ""},
	"POST /peer/forward":         {"A verb on a domain this host owns, forwarded by a host of its cluster", api.ForwardCall{}, api.ForwardReply{}, asJSON, ""},
	"POST /peer/renew":           {"A member's certificate renewal", peer.RenewCall{}, peer.RenewReply{}, asJSON, ""},
	"GET /peer/list":             {"The signed peer list (pull)", nil, peer.Signed{}, asJSON, ""},
	"PUT /peer/list":             {"The signed peer list (push)", peer.Signed{}, empty{}, asJSON, ""},
	"POST /migrate/incoming":     {"A migration arriving: upgrades to the migration protocol", nil, nil, asUpgrade, ""},
	"POST /migrate/data/{token}": {"A migration's encrypted data connection: upgrades", nil, nil, asUpgrade, ""},

	// Definitions and logs.
	"POST /definitions":                 {"Define a domain (kept across stops and host reboots)", api.DefineRequest{}, api.Domain{}, asJSON, ""},
	"GET /definitions/{name}":           {"A domain's stored definition", nil, api.Definition{}, asJSON, ""},
	"PUT /definitions/{name}":           {"Replace a definition (pending until the next start while it runs)", api.DefineRequest{}, api.Definition{}, asJSON, ""},
	"DELETE /definitions/{name}":        {"Undefine a domain", nil, empty{}, asJSON, ""},
	"PUT /definitions/{name}/autostart": {"Start a defined domain at host boot, or not", api.Autostart{}, api.Definition{}, asJSON, ""},
	"GET /logs/{name}":                  {"A domain's console or QEMU log (?file=console|qemu, ?tail=N lines)", nil, nil, asText, "file,tail"},

	// Domains.
	"GET /domains":                        {"The domains (?all=1: stopped ones kept too)", nil, []api.Domain{}, asJSON, "all"},
	"POST /domains":                       {"Create and start a domain: 202 and the Operation (its result a Domain); a DryRun at once when dry_run", api.CreateRequest{}, oneOf{api.Operation{}, api.DryRun{}}, asJSON, ""},
	"GET /domains/{name}":                 {"A domain", nil, api.Domain{}, asJSON, ""},
	"GET /domains/{name}/console":         {"The serial console: a WebSocket (binary messages) or the raw upgrade ringfence-console; history first (?history=0 skips it), input to the guest", nil, nil, asUpgrade, "history"},
	"GET /domains/{name}/vnc":             {"The VNC display of a vnc = 1 domain (RFB): a WebSocket (binary messages, as noVNC speaks) or the raw upgrade ringfence-vnc; 409 without one", nil, nil, asUpgrade, ""},
	"POST /domains/{name}/shutdown":       {"Ask the guest to shut down (with wait: 202 and the Operation)", api.ShutdownRequest{}, oneOf{api.Domain{}, api.Operation{}}, asJSON, ""},
	"POST /domains/{name}/start":          {"Start a stopped, kept domain", api.StartRequest{}, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/reboot":         {"Ask the guest to reboot", api.ShutdownRequest{}, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/reset":          {"Reset the VM (a hardware reset)", nil, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/destroy":        {"End the VM now", nil, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/pause":          {"Pause the vCPUs", nil, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/unpause":        {"Resume the vCPUs", nil, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/mem-set":        {"Set the balloon target", api.MemRequest{}, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/mem-max":        {"Set the maximum memory", api.MemRequest{}, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/sched-credit":   {"Set the scheduler weight and cap (-1: unchanged)", api.SchedCreditRequest{}, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/vcpu-pin":       {"Pin vCPUs to host CPUs (vcpu -1: all)", api.VCPUPinRequest{}, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/save":           {"Save the domain's state to a file: 202 and the Operation", api.SaveRequest{}, api.Operation{}, asJSON, ""},
	"POST /domains/{name}/clone":          {"A new domain from this one (thin-cloned disks, new MACs): 202 and the Operation", api.CloneRequest{}, api.Operation{}, asJSON, ""},
	"POST /restore":                       {"Restore a saved domain: 202 and the Operation", api.RestoreRequest{}, api.Operation{}, asJSON, ""},
	"POST /domains/{name}/block-attach":   {"Hot-plug a disk (an xl disk spec)", api.BlockRequest{}, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/block-detach":   {"Hot-unplug a disk", api.BlockRequest{}, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/cd-insert":      {"Insert a CD-ROM medium", api.BlockRequest{}, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/cd-eject":       {"Eject a CD-ROM medium", api.BlockRequest{}, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/network-attach": {"Hot-plug a vif (an xl vif spec)", api.NetworkRequest{}, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/network-detach": {"Hot-unplug a vif (index or MAC)", api.NetworkRequest{}, api.Domain{}, asJSON, ""},
	"GET /domains/{name}/blocks":          {"The VM's disks", nil, []api.BlockDevice{}, asJSON, ""},
	"GET /domains/{name}/vifs":            {"The VM's vifs", nil, []api.NetworkDevice{}, asJSON, ""},
	"GET /domains/{name}/guest":           {"What the running guest's agent says: its OS and its interfaces' addresses (503 while it does not answer)", nil, api.GuestInfo{}, asJSON, ""},
	"POST /domains/{name}/exec":           {"Run a command in the running guest through its agent and wait for it (no shell)", api.GuestExecRequest{}, api.GuestExecResult{}, asJSON, ""},
	"POST /domains/{name}/password":       {"Set a guest user's password through its agent", api.GuestPasswordRequest{}, struct{}{}, asJSON, ""},

	// xl's remaining verbs on a domain.
	"GET /domains/{name}/history":    {"The domain's recent figures: 1 s points over 10 minutes, 1 min means over 24 hours; ?since=UNIX for newer ones only", nil, api.History{}, asJSON, "since"},
	"GET /domains/{name}/config":     {"The domain's xl.cfg, as config export writes it", nil, nil, asText, ""},
	"POST /config/check":             {"Check a domain file's text as config check does: diagnostics at file:line:col, and the domain it makes", api.ConfigCheckRequest{}, api.ConfigReport{}, asJSON, ""},
	"GET /domains/{name}/vcpus":      {"The vCPUs: present ones (host CPU, state, time, affinity), then free slots up to maxvcpus", nil, []api.VCPU{}, asJSON, ""},
	"POST /domains/{name}/vcpu-set":  {"Hot-plug or unplug vCPUs until this many are present (1..maxvcpus)", api.VCPUSetRequest{}, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/sysrq":     {"Send Magic SysRq KEY (Alt+SysRq+KEY on the keyboard)", api.SysRqRequest{}, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/trigger":   {"Inject a platform event: nmi, reset, power or s3resume", api.TriggerRequest{}, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/rename":    {"Rename the domain (a running one keeps running); the reply is the domain under its new name", api.RenameRequest{}, api.Domain{}, asJSON, ""},
	"POST /domains/{name}/dump-core": {"Write the guest's memory to a new file as an ELF core: 202 and the Operation", api.DumpCoreRequest{}, api.Operation{}, asJSON, ""},

	// Snapshots, export, import, migration.
	"GET /domains/{name}/snapshots":                {"The domain's snapshots", nil, []api.Snapshot{}, asJSON, ""},
	"POST /domains/{name}/snapshots":               {"Take a snapshot (memory: the running state too): 202 and the Operation", api.SnapshotRequest{}, api.Operation{}, asJSON, ""},
	"POST /domains/{name}/snapshots/{snap}/revert": {"Revert to a snapshot: 202 and the Operation", nil, api.Operation{}, asJSON, ""},
	"DELETE /domains/{name}/snapshots/{snap}":      {"Delete a snapshot", nil, empty{}, asJSON, ""},
	"POST /domains/{name}/export":                  {"Write the domain to an archive on the host: 202 and the Operation", api.ExportRequest{}, api.Operation{}, asJSON, ""},
	"GET /domains/{name}/export/archive":           {"The domain's archive as the body, streamed as it is made (for remote clients)", nil, nil, asText, ""},
	"POST /import/archive":                         {"A domain from the archive in the body (capped: 413; 507 without the space): 202 and the Operation", nil, api.Operation{}, asJSON, "dir,name,no_start,paused,tenant"},
	"POST /domains/{name}/save/image":              {"The domain's save image as the body, streamed (header X-Ringfence-Save-Token); without ?checkpoint=1 it waits, paused, for save/confirm", nil, nil, asText, "checkpoint"},
	"POST /domains/{name}/save/confirm":            {"The client holds a checked copy of the streamed image: the domain is ended", api.SaveConfirm{}, api.Domain{}, asJSON, ""},
	"POST /restore/image":                          {"Restore the save image in the body (capped: 413; 507 without the space): 202 and the Operation", nil, api.Operation{}, asJSON, "paused"},
	"POST /import":                                 {"A domain from an archive on the host: 202 and the Operation", api.ImportRequest{}, api.Operation{}, asJSON, ""},
	"POST /domains/{name}/migrate":                 {"Live-migrate the domain: 202 and the Operation (progress carries the migration figures)", api.MigrateRequest{}, api.Operation{}, asJSON, ""},
	"POST /domains/{name}/migrate-cancel":          {"Cancel the domain's outgoing migration: 202 and the Operation (its result the Domain)", nil, api.Operation{}, asJSON, ""},

	// Storage pools and volumes.
	"GET /pools":                         {"The storage pools", nil, []api.Pool{}, asJSON, ""},
	"POST /pools":                        {"Make a pool of a directory", api.Pool{}, api.Pool{}, asJSON, ""},
	"DELETE /pools/{pool}":               {"Forget a pool (its files stay)", nil, empty{}, asJSON, ""},
	"GET /pools/{pool}/volumes":          {"A pool's volumes", nil, []api.Volume{}, asJSON, ""},
	"POST /pools/{pool}/volumes":         {"Create a volume (from: a thin clone of a template)", api.VolumeRequest{}, api.Volume{}, asJSON, ""},
	"PUT /pools/{pool}/volumes/{vol}":    {"Resize a volume", api.VolumeRequest{}, api.Volume{}, asJSON, ""},
	"DELETE /pools/{pool}/volumes/{vol}": {"Delete a volume", nil, empty{}, asJSON, ""},

	// Tenants.
	"GET /usage":               {"Usage rows (a tenant's principal: its own): each record, or per domain summed ?by=hour|day|month, within ?from..?to (RFC 3339; default this month so far), of ?tenant, ?domain; ?limit rows a page, ?cursor the next page's", nil, api.UsagePage{}, asJSON, "from,to,tenant,domain,by,cursor,limit"},
	"GET /usage/invoice":       {"A month (?month=YYYY-MM) rated with the daemon's price file, lines per tenant (a tenant's principal: its own), or of ?tenant", nil, api.Invoice{}, asJSON, "month,tenant"},
	"GET /tenants":             {"The tenants with quota and usage (a tenant's principal: its own)", nil, []api.Tenant{}, asJSON, ""},
	"POST /tenants":            {"Create a tenant: its memory and vCPUs reserved in the ledger", api.TenantRequest{}, api.Tenant{}, asJSON, ""},
	"GET /tenants/{tenant}":    {"A tenant with its quota and usage", nil, api.Tenant{}, asJSON, ""},
	"PUT /tenants/{tenant}":    {"Change a tenant's quota (not below what it uses)", api.TenantUpdate{}, api.Tenant{}, asJSON, ""},
	"DELETE /tenants/{tenant}": {"Delete a tenant that owns nothing", nil, empty{}, asJSON, ""},

	// Managed networks.
	"GET /networks":                  {"The managed networks", nil, []api.Network{}, asJSON, ""},
	"POST /networks":                 {"Create a managed network", api.Network{}, api.Network{}, asJSON, ""},
	"GET /networks/{network}":        {"A managed network", nil, api.Network{}, asJSON, ""},
	"GET /networks/{network}/leases": {"A NAT network's DHCP leases", nil, []api.Lease{}, asJSON, ""},
	"DELETE /networks/{network}":     {"Delete a managed network", nil, empty{}, asJSON, ""},
}
