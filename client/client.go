// Package client is the modelx client library: it plans and runs
// incremental pushes and pulls against a modelx registry. It never prints;
// progress goes to an optional Progress, results come back as values.
package client

import (
	"net/http"
	"runtime"
	"time"

	"modelx.io/modelx/client/chunker"
)

// DefaultSmallFileThreshold is the size under which files go into packs.
const DefaultSmallFileThreshold = 1 << 20

// Options configure a Client; the zero value works.
type Options struct {
	// HTTPClient carries every request; default DefaultHTTPClient().
	HTTPClient *http.Client
	// Token returns the bearer token for a registry base URL ("" for none).
	Token func(registry string) (string, error)
	// Concurrency is how many transfers and hashes run at once; default
	// twice the CPUs, at least 4 and at most 8.
	Concurrency int
	// SmallFileThreshold: files below it are packed; default 1 MiB.
	SmallFileThreshold int64
	// Chunker bounds the content-defined chunks of large files.
	Chunker chunker.Params
	// StallTimeout fails (and retries) a request that moves no byte for
	// this long; default DefaultStallTimeout.
	StallTimeout time.Duration
	// Progress receives transfer progress; default none.
	Progress Progress
}

// Progress receives progress of blob transfers. Implementations must be
// safe for concurrent use.
type Progress interface {
	// Start announces a transfer of size bytes and returns its tracker.
	Start(label string, size int64) Tracker
}

// Tracker follows one transfer.
type Tracker interface {
	// Add reports n more bytes moved (negative when a retry starts over).
	Add(n int64)
	// Done ends the transfer; err is nil on success.
	Done(err error)
}

type noProgress struct{}

func (noProgress) Start(string, int64) Tracker { return noProgress{} }
func (noProgress) Add(int64)                   {}
func (noProgress) Done(error)                  {}

// Client pushes and pulls models.
type Client struct {
	opts Options
}

// New returns a client with opts, defaults filled in.
func New(opts Options) *Client {
	if opts.HTTPClient == nil {
		opts.HTTPClient = DefaultHTTPClient()
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = min(8, max(4, 2*runtime.NumCPU()))
	}
	if opts.SmallFileThreshold <= 0 {
		opts.SmallFileThreshold = DefaultSmallFileThreshold
	}
	if opts.Chunker == (chunker.Params{}) {
		opts.Chunker = chunker.DefaultParams
	}
	if opts.Progress == nil {
		opts.Progress = noProgress{}
	}
	return &Client{opts: opts}
}

// API returns the low-level API client of a registry.
func (c *Client) API(registry string) *API {
	var token func() (string, error)
	if c.opts.Token != nil {
		token = func() (string, error) { return c.opts.Token(registry) }
	}
	api := NewAPI(registry, c.opts.HTTPClient, token)
	api.SetStallTimeout(c.opts.StallTimeout)
	return api
}
