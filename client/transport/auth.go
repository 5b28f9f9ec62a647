package transport

import (
	"context"
	"net/http"
)

// Bearer adds "Authorization: Bearer TOKEN" to the requests it sends to
// the registry's origin, asking Token before each one; requests to any
// other origin (presigned URLs of an object store) go without it. An
// empty token sends none; a failure to get one fails the request with a
// *LocalError.
type Bearer struct {
	// Next sends the request.
	Next http.RoundTripper
	// Registry is the registry's base URL, whose origin gets the token.
	Registry string
	// Token returns the bearer token for the registry.
	Token func(ctx context.Context) (string, error)
}

// RoundTrip implements http.RoundTripper.
func (b *Bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	if !sameOrigin(req.URL, b.Registry) {
		return b.Next.RoundTrip(req)
	}
	tok, err := b.Token(req.Context())
	if err != nil {
		closeBody(req)
		return nil, &LocalError{Err: err}
	}
	if tok == "" {
		return b.Next.RoundTrip(req)
	}
	areq := req.Clone(req.Context())
	areq.Header.Set("Authorization", "Bearer "+tok)
	return b.Next.RoundTrip(areq)
}

// UserAgent sets the User-Agent of requests that have none.
type UserAgent struct {
	// Next sends the request.
	Next http.RoundTripper
	// Value is the User-Agent, such as "modelx/v1.2.3".
	Value string
}

// RoundTrip implements http.RoundTripper.
func (u *UserAgent) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("User-Agent") != "" {
		return u.Next.RoundTrip(req)
	}
	areq := req.Clone(req.Context())
	areq.Header.Set("User-Agent", u.Value)
	return u.Next.RoundTrip(areq)
}

// closeBody closes the body of a request that is not sent, as a
// RoundTripper must.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
