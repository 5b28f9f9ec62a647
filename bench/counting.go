package main

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

// reqCounter counts the requests and wire bytes that pass through a
// countingTransport, per destination host and method.
type reqCounter struct {
	mu     sync.Mutex
	byHost map[string]map[string]int // host → method → count
	sent   atomic.Int64              // request bodies (Content-Length)
	recv   atomic.Int64              // response body bytes read
}

func newReqCounter() *reqCounter { return &reqCounter{byHost: map[string]map[string]int{}} }

// reset zeroes every count.
func (c *reqCounter) reset() {
	c.mu.Lock()
	c.byHost = map[string]map[string]int{}
	c.mu.Unlock()
	c.sent.Store(0)
	c.recv.Store(0)
}

func (c *reqCounter) add(host, method string) {
	c.mu.Lock()
	m := c.byHost[host]
	if m == nil {
		m = map[string]int{}
		c.byHost[host] = m
	}
	m[method]++
	c.mu.Unlock()
}

// counts is a snapshot of a reqCounter.
type counts struct {
	Registry  int            `json:"registry_requests"`
	Storage   int            `json:"storage_requests"`
	ByMethod  map[string]int `json:"requests_by_method"`
	WireSent  int64          `json:"wire_bytes_sent"`
	WireRecvd int64          `json:"wire_bytes_received"`
}

// snapshot splits the counts into requests to the registry host and to
// any other host (the object store, through presigned URLs).
func (c *reqCounter) snapshot(registryHost string) counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := counts{ByMethod: map[string]int{}, WireSent: c.sent.Load(), WireRecvd: c.recv.Load()}
	for host, methods := range c.byHost {
		role := "s3"
		if host == registryHost {
			role = "registry"
		}
		for m, n := range methods {
			out.ByMethod[role+" "+m] += n
			if role == "registry" {
				out.Registry += n
			} else {
				out.Storage += n
			}
		}
	}
	return out
}

// countingTransport wraps a RoundTripper and counts what it carries.
type countingTransport struct {
	base http.RoundTripper
	c    *reqCounter
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.c.add(req.URL.Host, req.Method)
	if req.ContentLength > 0 {
		t.c.sent.Add(req.ContentLength)
	}
	resp, err := t.base.RoundTrip(req)
	if err == nil && resp.Body != nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &t.c.recv}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// countingClient returns a copy of base whose transport counts into c.
func countingClient(base *http.Client, c *reqCounter) *http.Client {
	hc := *base
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	hc.Transport = &countingTransport{base: rt, c: c}
	return &hc
}
