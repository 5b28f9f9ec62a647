// Package client is the modelx client library: it plans and runs
// incremental pushes and pulls against a modelx registry. It never prints;
// progress goes to an optional Progress, results come back as values.
package client

import (
	"context"
	"net/http"
	"runtime"
	"time"

	"modelx.io/modelx/client/chunker"
	"modelx.io/modelx/client/credentials"
)

// DefaultSmallFileThreshold is the size under which files go into packs.
const DefaultSmallFileThreshold = 1 << 20

// Options configure a Client; the zero value works.
type Options struct {
	// HTTPClient carries every request; default DefaultHTTPClient().
	HTTPClient *http.Client
	// Keychain finds the bearer token of each registry; default none.
	Keychain credentials.Keychain
	// Token, when Keychain is nil, returns the bearer token for a
	// registry base URL ("" for none): a shorthand for a KeychainFunc.
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

// Progress receives the progress of one push, pull or copy, file by file.
// Every byte of the plan is reported once, by the Tracker of the file it
// belongs to, either as moved or as skipped; so when the operation
// succeeds, moved plus skipped equals the planned total, and moved and
// skipped (with present) equal the result's figures. Implementations must
// be safe for concurrent use.
type Progress interface {
	// Plan adds to the operation's plan: total bytes that it moves or
	// skips by its end, and present bytes that are in place already and
	// outside total (a pull's unchanged local files). The first call,
	// before any byte moves, gives the whole plan; later ones correct it
	// and may be negative (a push learns a pack's compressed size as it
	// builds the pack; a registry that lost blobs asks for them again).
	Plan(total, present int64)
	// Start begins the tracking of one file, or one pack of small files,
	// whose planned bytes are size, before any of them moves or is
	// skipped. A large file is one Tracker, whatever its chunks.
	Start(name string, size int64) Tracker
}

// Tracker follows the bytes of one file (or pack).
type Tracker interface {
	// Add reports n more bytes moved (negative when a retry starts over).
	Add(n int64)
	// Skip reports n bytes that need not move: the registry holds them,
	// a local file does, or they repeat bytes moved once already.
	Skip(n int64)
	// Done ends the file; err is nil on success.
	Done(err error)
}

type noProgress struct{}

func (noProgress) Plan(int64, int64)           {}
func (noProgress) Start(string, int64) Tracker { return noProgress{} }
func (noProgress) Add(int64)                   {}
func (noProgress) Skip(int64)                  {}
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
	keychain := c.opts.Keychain
	if keychain == nil && c.opts.Token != nil {
		token := c.opts.Token
		keychain = credentials.KeychainFunc(func(_ context.Context, registry string) (string, error) { return token(registry) })
	}
	api := NewAPI(registry, c.opts.HTTPClient, keychain)
	api.SetStallTimeout(c.opts.StallTimeout)
	return api
}

// OptionError is an option of a push or pull that cannot be used as
// given; Option names the field (e.g. "PullOptions.Files"), so a program
// can say which of its own settings is at fault.
type OptionError struct {
	Option string
	Err    error
}

// Error names the option and the cause.
func (e *OptionError) Error() string { return e.Option + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *OptionError) Unwrap() error { return e.Err }
