// Package transport composes what the modelx client does to every HTTP
// request as http.RoundTrippers, each one concern:
//
//   - Retry sends a request again after a network error or a 5xx or 429
//     answer, with jittered backoff, rewinding the body with GetBody;
//   - Tracing starts a span per attempt and propagates the trace to the
//     registry only (a presigned URL's query never enters a span);
//   - StallGuard cancels an attempt whose request or response body moves
//     no byte for a while;
//   - Bearer adds the registry's token, and only to the registry's origin,
//     so a presigned URL of an object store never sees it;
//   - UserAgent names the client.
//
// New stacks them in that order, outermost first. LazyBody makes a
// request body that is opened on its first read and afresh for each
// attempt. The registry client (modelx.io/modelx/client) builds requests
// and decodes answers on top of this stack.
package transport

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Options configure the stack New builds.
type Options struct {
	// Registry is the registry's base URL, "http(s)://HOST[:PORT]": its
	// origin alone gets the token and the trace headers.
	Registry string
	// Token returns the registry's bearer token ("" for none); nil for none.
	Token func(ctx context.Context) (string, error)
	// Retries is how often a failed attempt is sent again; New uses
	// DefaultRetries when it is 0, and none when it is negative.
	Retries int
	// StallTimeout is how long an attempt may move no byte; default
	// DefaultStallTimeout.
	StallTimeout time.Duration
	// UserAgent, if set, is sent as the User-Agent of every request.
	UserAgent string
}

// DefaultRetries is how often Retry sends a failed request again by default.
const DefaultRetries = 4

// Stack is the composed transport New returns, with the layers whose
// settings may change after it is built.
type Stack struct {
	http.RoundTripper
	// Retry is the outermost layer.
	Retry *Retry
	// StallGuard bounds each attempt.
	StallGuard *StallGuard
}

// New stacks Retry, Tracing, StallGuard, Bearer and UserAgent over next
// (http.DefaultTransport if nil).
func New(next http.RoundTripper, opts Options) *Stack {
	if next == nil {
		next = http.DefaultTransport
	}
	if opts.UserAgent != "" {
		next = &UserAgent{Next: next, Value: opts.UserAgent}
	}
	if opts.Token != nil {
		next = &Bearer{Next: next, Registry: opts.Registry, Token: opts.Token}
	}
	stall := &StallGuard{Next: next, Timeout: opts.StallTimeout}
	retries := opts.Retries
	switch {
	case retries == 0:
		retries = DefaultRetries
	case retries < 0:
		retries = 0
	}
	retry := &Retry{Next: &Tracing{Next: stall, Registry: opts.Registry}, Retries: retries}
	return &Stack{RoundTripper: retry, Retry: retry, StallGuard: stall}
}

// DefaultHTTPClient is tuned for many parallel large transfers.
func DefaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	t.ExpectContinueTimeout = 2 * time.Second
	t.ResponseHeaderTimeout = 2 * time.Minute
	return &http.Client{Transport: t}
}

// sameOrigin reports whether u is on the origin (scheme, host and port) of
// the base URL registry; a default port counts as given.
func sameOrigin(u *url.URL, registry string) bool {
	base, err := url.Parse(registry)
	if err != nil || u == nil {
		return false
	}
	return strings.EqualFold(u.Scheme, base.Scheme) && strings.EqualFold(hostPort(u), hostPort(base))
}

// hostPort is u's host with its port, the scheme's default if none.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return u.Hostname() + ":" + port
}
