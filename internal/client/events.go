package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/ringfence/ringfence/internal/api"
)

// LaggedError ends an event stream the reader fell behind on: resume
// with since=Since and nothing is missed.
type LaggedError struct{ Since uint64 }

func (e *LaggedError) Error() string {
	return fmt.Sprintf("lagged: reconnect with since=%d", e.Since)
}

// Events streams the events after since (since < 0: from now on), calling
// fn for each in order, until ctx ends (nil), fn returns an error (that
// error), the reader lagged (a *LaggedError), or the daemon goes.
func (c *Client) Events(ctx context.Context, since int64, fn func(api.Event) error) error {
	path := "/events"
	if since >= 0 {
		path += "?since=" + strconv.FormatInt(since, 10)
	}
	resp, err := c.send(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue // a heartbeat
		}
		var ev api.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("reading the event stream: %w", err)
		}
		if ev.Type == api.EventLagged {
			return &LaggedError{Since: ev.Seq}
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errors.New("the daemon ended the event stream"), sc.Err())
}

// Follow is Events that resumes, without a gap, after lagging behind.
func (c *Client) Follow(ctx context.Context, since int64, fn func(api.Event) error) error {
	for {
		err := c.Events(ctx, since, fn)
		var lag *LaggedError
		if !errors.As(err, &lag) {
			return err
		}
		since = int64(lag.Since)
	}
}
