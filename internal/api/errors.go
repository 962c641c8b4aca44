package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error classes. The daemon maps them to HTTP status in one place
// (StatusOf) and the client turns the status back into the class, so
// errors.Is(err, api.ErrNotFound) works on both sides of the socket.
var (
	ErrNotFound     = errors.New("not found")
	ErrConflict     = errors.New("conflict")
	ErrInvalid      = errors.New("invalid")
	ErrInsufficient = errors.New("insufficient resources")
	ErrUnavailable  = errors.New("unavailable")
	// ErrForbidden: the caller may not call this route (its identity or
	// listener does not allow it).
	ErrForbidden = errors.New("forbidden")
	// ErrTooLarge: the request body is over the limit.
	ErrTooLarge = errors.New("too large")
	// ErrUnauthorized: the caller did not prove who it is (no, or no
	// valid, credentials on the remote API listener).
	ErrUnauthorized = errors.New("unauthorized")
)

// ErrorBody is every error response: {"error": "...", "class": "..."}.
type ErrorBody struct {
	Error string `json:"error"`
	Class string `json:"class,omitempty"`
}

var classes = []struct {
	err    error
	status int
	name   string
}{
	{ErrNotFound, http.StatusNotFound, "not-found"},
	{ErrConflict, http.StatusConflict, "conflict"},
	{ErrInvalid, http.StatusBadRequest, "invalid"},
	{ErrInsufficient, http.StatusInsufficientStorage, "insufficient"},
	{ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
	{ErrForbidden, http.StatusForbidden, "forbidden"},
	{ErrTooLarge, http.StatusRequestEntityTooLarge, "too-large"},
	{ErrUnauthorized, http.StatusUnauthorized, "unauthorized"},
}

// StatusOf maps an error to its HTTP status and class name.
func StatusOf(err error) (int, string) {
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.status, c.name
		}
	}
	return http.StatusInternalServerError, "internal"
}

// RemoteError is an error received from the daemon.
type RemoteError struct {
	Message string
	Class   string
}

func (e *RemoteError) Error() string { return e.Message }

// Unwrap lets errors.Is match the class sentinel.
func (e *RemoteError) Unwrap() error {
	for _, c := range classes {
		if c.name == e.Class {
			return c.err
		}
	}
	return nil
}

// Errorf builds an error of a class: Errorf(ErrNotFound, "domain %q", n).
// The class is not repeated in the message.
func Errorf(class error, format string, a ...any) error {
	return &classed{msg: fmt.Sprintf(format, a...), class: class}
}

type classed struct {
	msg   string
	class error
}

func (e *classed) Error() string { return e.msg }
func (e *classed) Unwrap() error { return e.class }

// ErrCode returns err's class, or def when it has none: for wrapping a
// lower layer's error in context without losing a class it already has.
func ErrCode(err error, def error) error {
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.err
		}
	}
	return def
}

// Reply answers a request the API's way: v as JSON, or err as an
// ErrorBody with its class's status.
func Reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code, class := StatusOf(err)
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(ErrorBody{Error: err.Error(), Class: class})
		return
	}
	json.NewEncoder(w).Encode(v)
}
