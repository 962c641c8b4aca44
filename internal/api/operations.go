package api

import (
	"encoding/json"
	"time"
)

// Operation statuses: running, then one of the three ends.
const (
	OpRunning   = "running"
	OpSuccess   = "success"
	OpFailure   = "failure"
	OpCancelled = "cancelled"
)

// Operation is a long job the daemon runs on its own (create, save,
// restore, migrate, export, import, snapshot, clone, shutdown -w): the
// route that starts one answers 202 Accepted with its Location
// (/1.0/operations/ID) at once; the job runs on if the client goes away,
// and is waited for, watched, listed and cancelled under /1.0/operations.
type Operation struct {
	ID       string          `json:"id"` // 128-bit random, hex
	Kind     string          `json:"kind"`
	Domain   string          `json:"domain,omitempty"`
	Status   string          `json:"status"`
	Progress *JobProgress    `json:"progress,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"` // success: what the synchronous route would have answered
	Error    string          `json:"error,omitempty"`  // failure, cancelled
	Class    string          `json:"class,omitempty"`  // the error's class (StatusOf)
	Created  time.Time       `json:"created"`
	Updated  time.Time       `json:"updated"`
	Owner    string          `json:"owner,omitempty"` // the principal that started it
	Tenant   string          `json:"tenant,omitempty"`
}

// Done reports whether the operation has ended.
func (o Operation) Done() bool { return o.Status != OpRunning && o.Status != "" }

// Err is a finished operation's error (nil on success), with its class
// so errors.Is(err, ErrConflict) works as for a synchronous reply.
func (o Operation) Err() error {
	switch o.Status {
	case OpSuccess:
		return nil
	case OpCancelled:
		msg := o.Error
		if msg == "" {
			msg = "cancelled"
		}
		return &RemoteError{Message: "operation " + o.ID + " cancelled: " + msg, Class: o.Class}
	}
	return &RemoteError{Message: o.Error, Class: o.Class}
}
