package events

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/ringfence/ringfence/internal/api"
)

// How the stream treats its readers: a blank line (NDJSON) or a ping
// (WebSocket) when nothing happened for heartbeat; a reader that takes
// more than writeTimeout to take a write is cut off.
const (
	heartbeat    = 15 * time.Second
	writeTimeout = 10 * time.Second
)

// Stream serves GET /1.0/events: the events filter lets through, as NDJSON
// (one event a line) or, when the request is a WebSocket upgrade, one text
// message per event. ?since=SEQ replays what came after SEQ. An error
// (a bad since) is returned before anything is written, for the caller
// to answer.
func Stream(w http.ResponseWriter, r *http.Request, b *Bus, filter func(api.Event) bool) error {
	since := Live
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == Live {
			return api.Errorf(api.ErrInvalid, "since=%q is not an event seq (a decimal number)", v)
		}
		since = n
	}
	sub, err := b.Subscribe(since, filter)
	if err != nil {
		return err
	}
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		streamWS(w, r, sub)
	} else {
		streamNDJSON(w, r, sub)
	}
	return nil
}

// streamNDJSON writes one event a line, flushed once no further event is
// ready (a burst goes out in one write).
func streamNDJSON(w http.ResponseWriter, r *http.Request, sub *Sub) {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{}) // the stream lasts as long as the reader wants
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		e, ok, err := sub.nextEntry(r.Context(), tick.C)
		switch {
		case errors.Is(err, ErrLagged):
			w.Write(e.line)
		case err != nil:
			return
		case ok:
			if _, err := w.Write(e.line); err != nil {
				return
			}
			if sub.Ready() {
				continue
			}
		default:
			w.Write([]byte("\n"))
		}
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if rc.Flush() != nil || err != nil {
			return
		}
	}
}

// streamWS writes one event a text message.
func streamWS(w http.ResponseWriter, r *http.Request, sub *Sub) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := c.CloseRead(r.Context()) // ends when the client goes
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		e, ok, err := sub.nextEntry(ctx, tick.C)
		if err != nil && !errors.Is(err, ErrLagged) {
			return
		}
		wctx, cancel := context.WithTimeout(ctx, writeTimeout)
		if ok || err != nil {
			err = errors.Join(err, c.Write(wctx, websocket.MessageText, e.line[:len(e.line)-1]))
		} else {
			err = c.Ping(wctx)
		}
		cancel()
		if errors.Is(err, ErrLagged) {
			c.Close(websocket.StatusPolicyViolation, e.ev.Detail)
		}
		if err != nil {
			return
		}
	}
}
