// Package registry is the modelx registry: the HTTP API over a storage
// backend — indexes, manifests and content-addressed blobs — with presigned
// redirects on backends that can presign, and garbage collection.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"golang.org/x/sync/singleflight"

	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// Backend is what the registry needs of storage: the streaming interface
// and conditional writes for index updates.
type Backend interface {
	storage.Storage
	storage.ConditionalWriter
}

// Options tune a Registry; the zero value is a proxying registry with the defaults below.
type Options struct {
	// EnableRedirect answers blob GET and PUT with 302 and a presigned URL;
	// the backend must presign.
	EnableRedirect bool
	// PresignExpiry is how long a presigned URL stays valid; default 15 minutes.
	PresignExpiry time.Duration
	// GCGracePeriod protects blobs and manifests younger than this from
	// garbage collection, so in-flight pushes keep their blobs; default 1 hour.
	GCGracePeriod time.Duration
	// MaxHoldTTL is the longest a hold may last; a hold PUT asking for more
	// gets 400 HOLD_INVALID. Default DefaultMaxHoldTTL.
	MaxHoldTTL time.Duration
	// MaxManifestSize bounds a manifest PUT body; default spec.MaxManifestSize.
	MaxManifestSize int64
	// MaxUploads bounds the blob uploads proxied at once (not those sent
	// to presigned URLs); more get 429 and retry. Default 64.
	MaxUploads int
	// MaxUploadsPerIdentity bounds the proxied uploads of one uploader at
	// once: an authenticated identity, or the client address of anonymous
	// requests (see TrustedProxies). More get 429 and retry. Default 16.
	MaxUploadsPerIdentity int
	// MinUploadRate is the slowest, in bytes per second, that the body of a
	// proxied upload (blob or manifest) may arrive, measured over 10 s
	// windows after the first 10 s; a slower one is cut with 429 and
	// nothing is stored. 0 means 64 KiB/s; negative turns the floor off.
	MinUploadRate int64
	// ManifestParseMemory bounds the memory that manifest PUTs being read
	// and parsed take at once, each counted as 4 times its body; more wait
	// up to 30 s for room, then get 429. Default 256 MiB, about four
	// manifests of the largest size at once.
	ManifestParseMemory int64
	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client's address for the per-uploader limit; from any other peer,
	// the header is ignored. None by default.
	TrustedProxies []netip.Prefix
	// IOTimeout aborts a request whose body or response makes no progress
	// for this long. Default 1 minute.
	IOTimeout time.Duration
	// Logger receives request and error logs; default slog.Default().
	Logger *slog.Logger
	// Authenticator verifies bearer tokens; nil accepts every request as anonymous.
	Authenticator *auth.Authenticator
	// Policy authorizes requests; nil allows everything (no auth).
	Policy *auth.Policy
	// Login is advertised to `modelx login` at ConfigurationPath.
	Login *spec.OIDCLogin
	// Clock tells the registry what time it is: for the GC grace period
	// (compared with the backend's modification times), hold and claim
	// expiry, sweep leases and the times it writes into indexes. nil means
	// time.Now. It is for tests, which move it forward instead of sleeping;
	// operators have no use for it. Durations are measured on the real clock.
	Clock func() time.Time
	// DisableUI turns off the web UI at /-/ui/ (and the redirects of
	// browsers from / and from the UI's old pages under /ui/ to it).
	DisableUI bool
}

// Registry serves the modelx HTTP API from a storage backend.
type Registry struct {
	store     Backend
	presign   storage.Presigner
	opts      Options
	log       *slog.Logger
	manifests manifestCache
	indexes   indexCache
	links     linkCache
	uploads   *uploadLimits
	metrics   *Metrics
	// manifestBudget bounds the memory of manifest PUTs.
	manifestBudget *manifestBudget
	// builds runs each view build once at a time (ociview.go).
	builds singleflight.Group
}

// New returns a registry on store. It fails if redirects are asked of a
// backend that cannot presign.
func New(store Backend, opts Options) (*Registry, error) {
	if opts.PresignExpiry <= 0 {
		opts.PresignExpiry = 15 * time.Minute
	}
	if opts.GCGracePeriod <= 0 {
		opts.GCGracePeriod = time.Hour
	}
	if opts.MaxHoldTTL <= 0 {
		opts.MaxHoldTTL = DefaultMaxHoldTTL
	}
	if opts.MaxManifestSize <= 0 {
		opts.MaxManifestSize = spec.MaxManifestSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxUploads <= 0 {
		opts.MaxUploads = defaultMaxUploads
	}
	if opts.MaxUploadsPerIdentity <= 0 {
		opts.MaxUploadsPerIdentity = defaultMaxUploadsPerIdentity
	}
	if opts.MinUploadRate == 0 {
		opts.MinUploadRate = defaultMinUploadRate
	}
	if opts.ManifestParseMemory <= 0 {
		opts.ManifestParseMemory = defaultManifestParseMemory
	}
	if opts.IOTimeout <= 0 {
		opts.IOTimeout = defaultIOTimeout
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	m := newMetrics()
	// One wrapping validates every key and observes every call; it keeps
	// the backend's capabilities, so it is a Backend still.
	wrapped := storage.Wrap(store, storageObserver{m})
	reg := &Registry{store: wrapped.(Backend), opts: opts, log: opts.Logger, metrics: m,
		uploads: newUploadLimits(opts, m), manifestBudget: newManifestBudget(opts.ManifestParseMemory, m)}
	if opts.EnableRedirect {
		p, ok := wrapped.(storage.Presigner)
		if !ok {
			return nil, errors.New("redirects need a backend that presigns URLs (S3); remove --enable-redirect or use --s3-url")
		}
		reg.presign = p
	}
	return reg, nil
}

// now is the time on the registry's clock (Options.Clock).
func (reg *Registry) now() time.Time { return reg.opts.Clock() }

// Metrics returns the registry's Prometheus metrics, served at /metrics.
func (reg *Registry) Metrics() *Metrics { return reg.metrics }

// Handler returns the HTTP API.
func (reg *Registry) Handler() http.Handler {
	r := chi.NewRouter()
	var routes routeSet // learned below, before the handler serves
	r.Use(ioDeadlines(reg.opts.IOTimeout), middleware.RequestID, requestLogger(reg.log), reg.metrics.instrument(&routes), traceRequests, middleware.Recoverer)
	if !reg.opts.DisableUI {
		r.Use(reg.webUI()) // the web pages under /-/ui/ (docs/ui.md)
	}
	r.NotFound(reg.handle(func(w http.ResponseWriter, r *http.Request) error {
		if reg.legacyUIRedirect(w, r) {
			return nil
		}
		return spec.Errorf(spec.ErrorUnsupported, "no such endpoint: %s %s; see docs/api.md", r.Method, r.URL.Path)
	}))
	r.MethodNotAllowed(reg.handle(func(w http.ResponseWriter, r *http.Request) error {
		return spec.Errorf(spec.ErrorUnsupported, "method %s is not allowed on %s", r.Method, r.URL.Path)
	}))
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	r.Get("/readyz", reg.handle(reg.ready))
	r.Method(http.MethodGet, "/metrics", reg.metrics.Handler())
	r.Get(spec.ConfigurationPath, reg.handle(reg.configuration))
	r.Get(ociTokenPath, reg.handleOCI(reg.ociToken))
	r.Post(ociTokenPath, reg.handleOCI(reg.ociToken))
	r.Mount("/v2", reg.ociRoutes()) // the OCI distribution API (oci.go)
	r.Group(func(r chi.Router) {
		r.Use(reg.authenticate)
		r.Get("/", reg.handle(reg.root))
		r.With(reg.authorizeRegistry(auth.Admin)).Post("/garbage-collect", reg.handle(reg.garbageCollectRegistry))
		r.Route("/{repository}/{name}", func(r chi.Router) {
			pull, push, del, hold := reg.authorize(auth.Pull), reg.authorize(auth.Push), reg.authorize(auth.Delete), reg.authorize(auth.Hold)
			r.With(pull).Get("/index", reg.handle(reg.getIndex))
			r.With(del).Delete("/index", reg.handle(reg.deleteIndex))
			r.With(pull).Get("/manifests/{reference}", reg.handle(reg.getManifest))
			r.With(pull).Head("/manifests/{reference}", reg.handle(reg.getManifest))
			r.With(push).Put("/manifests/{reference}", reg.handle(reg.putManifest))
			r.With(del).Delete("/manifests/{reference}", reg.handle(reg.deleteManifest))
			r.With(pull).Head("/blobs/{digest}", reg.handle(reg.withDerived(reg.headBlob)))
			r.With(pull).Get("/blobs/{digest}", reg.handle(reg.withDerived(reg.getBlob)))
			r.With(push).Put("/blobs/{digest}", reg.handle(reg.putBlob))
			r.Post("/blobs/batch", reg.handle(reg.batchBlobs)) // pull or push, by operation
			r.With(pull).Get("/holds", reg.handle(reg.listHolds))
			r.With(hold).Put("/holds/{holder}", reg.handle(reg.putHold))
			r.With(hold).Delete("/holds/{holder}", reg.handle(reg.releaseHold))
			r.With(reg.authorize(auth.Delete, auth.Admin)).Post("/garbage-collect", reg.handle(reg.garbageCollect))
		})
	})
	routes = learnRoutes(r)
	return r
}

func (reg *Registry) ready(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if _, err := reg.store.Stat(ctx, globalIndexKey); err != nil && !errors.Is(err, storage.ErrNotFound) {
		reg.log.WarnContext(ctx, "storage not ready", "error", err)
		return spec.Errorf(spec.ErrorUnavailable, "storage is not reachable")
	}
	_, _ = w.Write([]byte("ok\n"))
	return nil
}

// model returns the validated repository and name of the request path.
func model(r *http.Request) (repo, name string, err error) {
	repo, name = chi.URLParam(r, "repository"), chi.URLParam(r, "name")
	if err := spec.ValidateRepository(repo); err != nil {
		return "", "", err
	}
	if err := spec.ValidateComponent("name", name); err != nil {
		return "", "", err
	}
	return repo, name, nil
}

// readRequestBody reads a request body of at most limit bytes, what it is
// named in errors: TOO_LARGE past the limit (with fix, how to stay under
// it), the code invalid when it cannot be read.
func readRequestBody(r *http.Request, limit int64, what string, invalid spec.ErrorCode, fix string) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, spec.Errorf(spec.ErrorTooLarge, "%s is %d bytes, over the limit of %d%s", what, r.ContentLength, limit, fix)
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, spec.Errorf(invalid, "reading %s failed: %v", what, err)
	}
	if int64(len(data)) > limit {
		return nil, spec.Errorf(spec.ErrorTooLarge, "%s is over the limit of %d bytes%s", what, limit, fix)
	}
	return data, nil
}

// internal wraps a storage failure with what the registry was doing.
func internal(what string, err error) error { return fmt.Errorf("%s: %w", what, err) }
