package api

import "time"

// Event types: what an Event is about.
const (
	EventLifecycle = "lifecycle" // a domain changed (Action says how)
	EventOperation = "operation" // a long operation's progress
	EventHost      = "host"      // the host itself
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
)

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
