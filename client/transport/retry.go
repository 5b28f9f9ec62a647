package transport

import (
	"crypto/x509"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Retry sends a request again when an attempt fails in a way that another
// attempt may mend: a network error (a stall among them) or an answer
// Retryable accepts. It waits a jittered, doubling backoff between
// attempts (200ms, 400ms, … up to 6.4s, each between half and one and a
// half times that) and stops when the request's context ends. A request
// body is rewound for each attempt with the request's GetBody; a request
// with a body and no GetBody is sent once.
//
// It does not retry what another attempt cannot change: a *LocalError (a
// body that could not be opened, a token that could not be had), a TLS
// certificate the machine does not trust or that names another host, and
// a plain HTTP answer to HTTPS. When every attempt got a retryable
// answer, the last answer is returned, for the caller to read.
type Retry struct {
	// Next sends each attempt.
	Next http.RoundTripper
	// Retries is how many attempts may follow the first.
	Retries int
}

// RoundTrip implements http.RoundTripper.
func (r *Retry) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			backoff := time.Duration(200<<min(attempt-1, 5)) * time.Millisecond
			timer := time.NewTimer(backoff/2 + rand.N(backoff))
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil, ctx.Err()
			case <-timer.C:
			}
		}
		last := attempt >= r.Retries
		areq, body, err := rewind(req, attempt)
		if err != nil {
			return nil, err
		}
		if !last && areq.Body != nil && areq.Body != http.NoBody && req.GetBody == nil {
			last = true // the body cannot be sent twice
		}
		resp, err := r.Next.RoundTrip(areq)
		if err != nil {
			if local := body.localError(); local != nil {
				return nil, local // the body, not the network
			}
			if last || ctx.Err() != nil || permanent(err) {
				return nil, err
			}
			continue
		}
		if last || !Retryable(resp.StatusCode) {
			return resp, nil
		}
		// Drained (a little) so the connection may be reused.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}
}

// Retryable reports whether an answer with this status may succeed when
// sent again: a server error or throttling, but not a full store (507) or
// a method the server lacks (501), which a retry only delays.
func Retryable(status int) bool {
	switch status {
	case http.StatusInsufficientStorage, http.StatusNotImplemented:
		return false
	}
	return status >= 500 || status == http.StatusTooManyRequests
}

// permanent reports whether a failed attempt would fail again the same way.
func permanent(err error) bool {
	var local *LocalError
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	return errors.As(err, &local) || errors.As(err, &unknownCA) || errors.As(err, &badHost) || IsPlainHTTPAnswer(err)
}

// IsPlainHTTPAnswer reports whether err is net/http's report of a plain
// HTTP answer to a TLS handshake (it has no type of its own).
func IsPlainHTTPAnswer(err error) bool {
	return err != nil && strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// rewind returns the request of one attempt: the first sends req's body,
// later ones a fresh body from GetBody. The body is watched for a
// *LocalError.
func rewind(req *http.Request, attempt int) (*http.Request, *watchedBody, error) {
	areq := req.Clone(req.Context())
	if req.Body == nil || req.Body == http.NoBody {
		return areq, nil, nil
	}
	rc := req.Body
	if attempt > 0 && req.GetBody != nil {
		var err error
		if rc, err = req.GetBody(); err != nil {
			return nil, nil, &LocalError{Err: err}
		}
	}
	w := &watchedBody{ReadCloser: rc}
	areq.Body = w
	return areq, w, nil
}

// watchedBody remembers a *LocalError its reads returned: net/http may
// report a failed request without the body's error.
type watchedBody struct {
	io.ReadCloser
	mu    sync.Mutex
	local *LocalError
}

func (w *watchedBody) Read(p []byte) (int, error) {
	n, err := w.ReadCloser.Read(p)
	var local *LocalError
	if err != nil && errors.As(err, &local) {
		w.mu.Lock()
		w.local = local
		w.mu.Unlock()
	}
	return n, err
}

// localError is the *LocalError a read returned, or nil; w may be nil.
func (w *watchedBody) localError() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.local == nil {
		return nil
	}
	return w.local
}
