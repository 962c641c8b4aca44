// Package auth says who may do what: the permissions routes need, the
// built-in roles that hold them, and the principal behind a request.
// Deny by default: a role holds exactly the permissions listed here.
package auth

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Perm is what a route needs.
type Perm string

const (
	HostRead       Perm = "host.read"       // host info, stats, metrics, the daemon's log
	HostManage     Perm = "host.manage"     // host shutdown, trust between hosts, settings
	TokenManage    Perm = "token.manage"    // API tokens
	AuditRead      Perm = "audit.read"      // the audit log
	DomainRead     Perm = "domain.read"     // list, show, logs, devices, snapshots
	DomainCreate   Perm = "domain.create"   // create, define, undefine, config, restore, import, clone
	DomainOperate  Perm = "domain.operate"  // start, stop, reboot, reset, destroy, pause, save, snapshots, export
	DomainConfig   Perm = "domain.config"   // memory, vCPUs, scheduling, device hot-plug, media
	DomainConsole  Perm = "domain.console"  // the serial console
	DomainMigrate  Perm = "domain.migrate"  // migrate a domain to another host
	DomainGuest    Perm = "domain.guest"    // inside the guest, through its agent: run commands, set passwords
	DomainHA       Perm = "domain.ha"       // turn a domain's HA (restart on a survivor) on or off
	StorageRead    Perm = "storage.read"    // pools and volumes
	StorageManage  Perm = "storage.manage"  // pools and volumes: create, delete, resize
	NetworkRead    Perm = "network.read"    // networks and leases
	NetworkManage  Perm = "network.manage"  // networks: create, delete
	EventsRead     Perm = "events.read"     // the event stream (filtered by what the caller may see)
	OpsRead        Perm = "operations.read" // operations: list, show, wait, cancel its own
	CredentialBind Perm = "credential.bind" // a token holder: bind a client certificate to its own token
	PeerMigrate    Perm = "peer.migrate"    // a peer host: migrate a domain here
	PeerSync       Perm = "peer.sync"       // a peer host: the peer list, renewing its certificate
	PeerJoin       Perm = "peer.join"       // anyone on the peer listener: join with a single-use token
	PeerForward    Perm = "peer.forward"    // a peer host of the cluster: a verb on a domain this host owns, for its caller
	APIRead        Perm = "api.read"        // GET /1.0: the API's version and extensions (every user role)
	TenantRead     Perm = "tenant.read"     // tenants, their quotas and usage (a tenant role: its own only)
	TenantManage   Perm = "tenant.manage"   // tenants: create, change quotas, delete
	UsageRead      Perm = "usage.read"      // usage records and invoices (a tenant role: its own only)
)

// Perms is every permission, in a stable order.
func Perms() []Perm {
	return []Perm{HostRead, HostManage, TokenManage, AuditRead, DomainRead, DomainCreate, DomainOperate,
		DomainConfig, DomainConsole, DomainMigrate, DomainGuest, DomainHA, StorageRead, StorageManage, NetworkRead, NetworkManage,
		EventsRead, OpsRead, CredentialBind, PeerMigrate, PeerSync, PeerJoin, PeerForward, APIRead, TenantRead, TenantManage, UsageRead}
}

// Role is a named set of permissions.
type Role string

const (
	// Admin is the host's administrator (root on the unix socket, or a
	// token with this role): everything but the peer hosts' routes.
	Admin Role = "admin"
	// Operator runs domains and their storage; no host settings, trust,
	// tokens or networks.
	Operator Role = "operator"
	// Auditor reads everything an admin can read, changes nothing.
	Auditor Role = "auditor"
	// TenantAdmin manages its tenant's domains and volumes, nothing else;
	// it sees only what its tenant owns (and the host's shared pools and
	// networks), and everything else answers as if it did not exist.
	TenantAdmin Role = "tenant-admin"
	// TenantUser uses its tenant's domains (start, stop, console).
	TenantUser Role = "tenant-user"
	// PeerHost is another host of ours on the peer listener.
	PeerHost Role = "peer-host"
	// Joiner is an unknown caller on the peer listener.
	Joiner Role = "joiner"
)

var rolePerms = map[Role][]Perm{
	Admin: {APIRead, HostRead, HostManage, TokenManage, AuditRead, DomainRead, DomainCreate, DomainOperate, DomainConfig,
		DomainConsole, DomainMigrate, DomainGuest, DomainHA, StorageRead, StorageManage, NetworkRead, NetworkManage, EventsRead, OpsRead, CredentialBind,
		TenantRead, TenantManage, UsageRead},
	Operator: {APIRead, HostRead, DomainRead, DomainCreate, DomainOperate, DomainConfig, DomainConsole, DomainMigrate, DomainGuest, DomainHA,
		StorageRead, StorageManage, NetworkRead, EventsRead, OpsRead, CredentialBind, TenantRead},
	Auditor: {APIRead, HostRead, AuditRead, DomainRead, StorageRead, NetworkRead, EventsRead, OpsRead, CredentialBind, TenantRead, UsageRead},
	TenantAdmin: {APIRead, DomainRead, DomainCreate, DomainOperate, DomainConfig, DomainConsole, DomainGuest, StorageRead, StorageManage, NetworkRead,
		EventsRead, OpsRead, CredentialBind, TenantRead, UsageRead},
	TenantUser: {APIRead, DomainRead, DomainOperate, DomainConsole, EventsRead, OpsRead, CredentialBind, TenantRead, UsageRead},
	PeerHost:   {PeerMigrate, PeerSync, PeerForward},
	Joiner:     {PeerJoin},
}

// Can reports whether the role holds perm.
func (r Role) Can(p Perm) bool { return slices.Contains(rolePerms[r], p) }

// Perms are the permissions the role holds (a copy), e.g. for a page to
// show only the buttons its user may press.
func (r Role) Perms() []Perm { return slices.Clone(rolePerms[r]) }

// Tenanted reports whether the role is bound to a tenant.
func (r Role) Tenanted() bool { return r == TenantAdmin || r == TenantUser }

// UserRoles are the roles a token or a client certificate may carry.
func UserRoles() []Role { return []Role{Admin, Operator, Auditor, TenantAdmin, TenantUser} }

// ParseRole reads a user role; tenant is required exactly for the tenant
// roles.
func ParseRole(s, tenant string) (Role, error) {
	r := Role(s)
	if !slices.Contains(UserRoles(), r) {
		names := make([]string, 0, 5)
		for _, u := range UserRoles() {
			names = append(names, string(u))
		}
		return "", fmt.Errorf("unknown role %q: one of %s", s, strings.Join(names, ", "))
	}
	if r.Tenanted() != (tenant != "") {
		if tenant == "" {
			return "", fmt.Errorf("role %s needs --tenant NAME", r)
		}
		return "", fmt.Errorf("role %s is host-wide: drop --tenant (or use tenant-admin/tenant-user)", r)
	}
	return r, nil
}

// Principal is who is behind a request.
type Principal struct {
	Kind   Kind   // how it proved who it is
	Name   string // a token's or certificate's name; "root" on the socket
	Role   Role
	Tenant string // set for the tenant roles: all it may see
	Remote string // where it called from
}

// Kind is how a principal was identified.
type Kind string

const (
	Local     Kind = "local"     // the unix socket (root)
	Token     Kind = "token"     // an API token
	Cert      Kind = "cert"      // a client certificate
	Peer      Kind = "peer"      // a peer host's certificate
	Anonymous Kind = "anonymous" // nobody identified (the peer listener's joiners)
)

// Can reports whether p holds perm.
func (p Principal) Can(perm Perm) bool { return p.Role.Can(perm) }

// Sees reports whether p may see an object owned by tenant ("" = the
// host's own): a host-wide role sees everything, a tenant role only its
// tenant's.
func (p Principal) Sees(tenant string) bool { return !p.Role.Tenanted() || p.Tenant == tenant }

func (p Principal) String() string {
	s := string(p.Kind) + " " + p.Name + " (" + string(p.Role)
	if p.Tenant != "" {
		s += ", tenant " + p.Tenant
	}
	return s + ")"
}

type ctxKey struct{}

// NewContext carries p with a request's context, down to the layers that
// record who asked (events, audit, operations).
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext is who is behind ctx (the zero Principal, which may do
// nothing, when none was set).
func FromContext(ctx context.Context) Principal {
	p, _ := ctx.Value(ctxKey{}).(Principal)
	return p
}
