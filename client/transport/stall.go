package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// DefaultStallTimeout is how long a transfer may make no progress before
// StallGuard gives up on that attempt (and Retry sends it again).
const DefaultStallTimeout = 2 * time.Minute

// ErrStalled reports a request that stopped making progress.
var ErrStalled = errors.New("the transfer stopped making progress")

// StallGuard ends an attempt whose request body or response moves no byte
// for Timeout: a server (or proxy) that hangs mid-transfer fails the
// attempt instead of holding it forever. The error, from RoundTrip or
// from reading the response body, wraps ErrStalled and names the timeout.
// The guard runs until the response body is closed.
type StallGuard struct {
	// Next sends the request.
	Next http.RoundTripper
	// Timeout is how long no byte may move; DefaultStallTimeout if <= 0.
	Timeout time.Duration
}

// RoundTrip implements http.RoundTripper.
func (s *StallGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	d := s.Timeout
	if d <= 0 {
		d = DefaultStallTimeout
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	g := &stallTimer{d: d, end: cancel, timer: time.AfterFunc(d, func() { cancel(ErrStalled) })}
	sreq := req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		sreq.Body = &progressBody{ReadCloser: req.Body, guard: g}
	}
	resp, err := s.Next.RoundTrip(sreq)
	if err != nil {
		g.stop()
		return nil, g.explain(ctx, err)
	}
	resp.Body = &guardedBody{ReadCloser: resp.Body, guard: g, ctx: ctx}
	return resp, nil
}

// stallTimer cancels an attempt when progress is not called for d.
type stallTimer struct {
	d     time.Duration
	timer *time.Timer
	end   context.CancelCauseFunc
}

func (g *stallTimer) progress() { g.timer.Reset(g.d) }

func (g *stallTimer) stop() {
	g.timer.Stop()
	g.end(nil)
}

// explain replaces err by ErrStalled when the guard ended the attempt.
func (g *stallTimer) explain(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), ErrStalled) {
		return fmt.Errorf("%w for %s", ErrStalled, g.d)
	}
	return err
}

// progressBody is a request body that counts as progress when read.
type progressBody struct {
	io.ReadCloser
	guard *stallTimer
}

func (b *progressBody) Read(p []byte) (int, error) {
	b.guard.progress()
	return b.ReadCloser.Read(p)
}

// guardedBody is a response body under a stallTimer; closing it ends the
// attempt.
type guardedBody struct {
	io.ReadCloser
	guard *stallTimer
	ctx   context.Context
}

func (b *guardedBody) Read(p []byte) (int, error) {
	b.guard.progress()
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = b.guard.explain(b.ctx, err)
	}
	return n, err
}

func (b *guardedBody) Close() error {
	err := b.ReadCloser.Close()
	b.guard.stop()
	return err
}
