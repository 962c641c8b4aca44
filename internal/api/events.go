package api

import "time"

// Event types: what an Event is about.
const (
	EventLifecycle = "lifecycle" // a domain changed (Action says how)
	EventOperation = "operation" // a long operation's progress
	EventHost      = "host"      // the host itself
	// EventHA is HA's fencing and takeovers: Action is one of the EvHA*
	// below and Detail their JSON (HAFenced, HATakeover, HARefused).
	EventHA = "ha"
	// EventResync says the subscriber asked for events older than the
	// retained window: Seq is the oldest one still held; what came before
	// is lost and the subscriber should re-read the state it tracks.
	EventResync = "resync"
	// EventLagged is the last event of a subscriber that fell too far
	// behind: it is dropped and should reconnect with ?since=Seq.
	EventLagged = "lagged"
)

// Lifecycle actions (Event.Action of a lifecycle event).
const (
	EvCreated       = "created"
	EvStarted       = "started"
	EvPaused        = "paused"
	EvUnpaused      = "unpaused"
	EvShutdown      = "shutdown"
	EvCrashed       = "crashed"
	EvRebooted      = "rebooted"
	EvDestroyed     = "destroyed"
	EvMigrated      = "migrated"
	EvSaved         = "saved"
	EvRestored      = "restored"
	EvResized       = "resized"
	EvDeviceAdded   = "device-added"
	EvDeviceRemoved = "device-removed"
	EvMediaChanged  = "media-changed"
	EvDefined       = "defined"
	EvUndefined     = "undefined"
	EvRenamed       = "renamed"
	EvGuestPassword = "guest-password-set"
)

// HA actions (Event.Action of an "ha" event).
const (
	EvHAFenced   = "ha.fenced"
	EvHATakeover = "ha.takeover"
	EvHARefused  = "ha.refused"
)

// HAFenced: a host killed its HA guests' QEMUs (Detail of ha.fenced).
type HAFenced struct {
	Host    string   `json:"host"`
	Domains []string `json:"domains"`
	Reason  string   `json:"reason"`
	// By is who killed them: "daemon" or "guard".
	By string `json:"by"`
	// AtNs is the wall-clock time of the kill (ns since the epoch).
	AtNs int64 `json:"at_ns"`
}

// HATakeover: a survivor took a failed host's HA domain (ha.takeover);
// the phases are wall-clock ns since the epoch.
type HATakeover struct {
	Domain       string `json:"domain"`
	From         string `json:"from"`
	To           string `json:"to"`
	ExpirySeenNs int64  `json:"expiry_seen"`
	TxnNs        int64  `json:"txn"`
	QEMUStarted  int64  `json:"qemu_started"`
}

// HARefused: HA did not do something, and why (ha.refused).
type HARefused struct {
	Domain string `json:"domain,omitempty"`
	Why    string `json:"why"`
}

// Event is one entry of the event stream (GET /1.0/events).
type Event struct {
	// Seq increases by one per event published on this daemon.
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Type   string    `json:"type"`
	Action string    `json:"action,omitempty"`
	Domain string    `json:"domain,omitempty"`
	// Tenant owns the domain ("" = the host's own): tenant principals
	// see only their tenant's events.
	Tenant string `json:"tenant,omitempty"`
	// Actor is who asked (nil: the guest itself, or the host).
	Actor  *Actor `json:"actor,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Actor is who caused an event: a principal and where it called from.
type Actor struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Role   string `json:"role"`
	Remote string `json:"remote,omitempty"`
}
