package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// A save over a remote: the image is streamed to the client, which
// writes it to its own file. Without -c the guest stays paused (and its
// domain locked) after the stream until the client confirms it holds a
// checked copy (POST .../save/confirm with the token of the stream's
// X-Ringfence-Save-Token header); only then is it ended. A client that
// never confirms (gone, disk full, bad copy) gets saveConfirmWait, after
// which the guest runs on: a save is never the loss of a guest.

// saveConfirmWait is how long a streamed save waits for the client.
var saveConfirmWait = 2 * time.Minute

// pendingSave is a streamed save waiting for its client.
type pendingSave struct {
	domain, owner string
	confirm       chan struct{}
	done          chan error // the save's end, after the confirmation
}

// pendingSaves are the streamed saves waiting, by token.
type pendingSaves struct {
	mu sync.Mutex
	m  map[string]*pendingSave
}

func (p *pendingSaves) add(ps *pendingSave) string {
	var b [16]byte
	rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]*pendingSave{}
	}
	p.m[tok] = ps
	return tok
}

// take removes and returns the save of tok if it is domain's and owner's.
func (p *pendingSaves) take(tok, domain, owner string) (*pendingSave, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps, ok := p.m[tok]
	if !ok || ps.domain != domain || ps.owner != owner {
		return nil, false
	}
	delete(p.m, tok)
	return ps, true
}

func (p *pendingSaves) drop(tok string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, tok)
}

// saveDownload streams domain's save image as the body (?checkpoint=1:
// it runs on, as save -c). The response ends with the image; the save
// itself ends when the client confirms, or saveConfirmWait after.
func (s *Server) saveDownload(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	checkpoint := r.URL.Query().Get("checkpoint") == "1"
	ps := &pendingSave{domain: name, owner: principalOf(r.Context()).Name, confirm: make(chan struct{}), done: make(chan error, 1)}
	tok := s.saves.add(ps)
	body := newStreamBody(w, func(h http.Header) { h.Set("X-Ringfence-Save-Token", tok) })
	// The save outlives the request (it waits for the confirmation), but
	// a client gone while the image streams cancels it.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	stop := context.AfterFunc(r.Context(), cancel)
	written := make(chan struct{})
	go func() {
		defer cancel()
		defer s.saves.drop(tok)
		ps.done <- s.mgr.SaveTo(ctx, name, body, checkpoint, func() error {
			stop()
			close(written)
			select {
			case <-ps.confirm:
				return nil
			case <-time.After(saveConfirmWait):
				return api.Errorf(api.ErrUnavailable, "the client did not confirm within %s that it holds the image", saveConfirmWait)
			}
		})
	}()
	select {
	case <-written: // the image is whole: end the response
	case err := <-ps.done:
		ps.done <- err // for a confirmation that raced with the end
		body.end(err)
	}
}

// saveConfirm is the client's word that it holds a checked copy of the
// image: the save ends the domain and answers as the domain is then.
func (s *Server) saveConfirm(r *http.Request, req api.SaveConfirm) (any, error) {
	name := r.PathValue("name")
	ps, ok := s.saves.take(req.Token, name, principalOf(r.Context()).Name)
	if !ok {
		return nil, api.Errorf(api.ErrNotFound, "no save of %s is waiting for that token (it ended, or the wait of %s ran out: the domain runs on)", name, saveConfirmWait)
	}
	close(ps.confirm)
	select {
	case err := <-ps.done:
		return s.domainView(name, err)
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
}
