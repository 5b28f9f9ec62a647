package registry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"modelx.io/modelx/registry/ui"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// Metrics are the Prometheus series a Registry records. Each Registry has
// its own registry of collectors, served by its /metrics endpoint, so
// several Registries in one process (tests, replicas) never collide.
type Metrics struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	blobBytes       *prometheus.CounterVec
	redirects       *prometheus.CounterVec
	dedup           *prometheus.CounterVec
	gcRuns          *prometheus.CounterVec
	gcDeleted       *prometheus.CounterVec
	gcBytes         prometheus.Counter
	gcDuration      prometheus.Histogram
	storageErrors   *prometheus.CounterVec
	storageDuration *prometheus.HistogramVec
	uploadsInFlight prometheus.Gauge
	uploadsRefused  *prometheus.CounterVec

	manifestParseReserved prometheus.Gauge
	manifestParseWaiting  prometheus.Gauge
}

func newMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelxd_http_requests_total", Help: "HTTP requests answered, by route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "modelxd_http_request_duration_seconds", Help: "Time to answer HTTP requests, by route pattern and method.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"route", "method"})
	m.blobBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelxd_blob_bytes_total", Help: "Blob bytes moved through the registry (proxy mode): direction is in (uploads) or out (downloads).",
	}, []string{"direction"})
	m.redirects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelxd_blob_redirects_total", Help: "Blob requests answered with a redirect to a presigned URL, by direction (upload, download).",
	}, []string{"direction"})
	m.dedup = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelxd_blob_dedup_hits_total", Help: "Blob requests that found the blob stored: HEAD hits, and uploads answered without their body (kind head or put).",
	}, []string{"kind"})
	m.gcRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelxd_gc_runs_total", Help: "Garbage collections, by result (ok, skipped, error).",
	}, []string{"result"})
	m.gcDeleted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelxd_gc_deleted_total", Help: "Objects garbage collection deleted, by kind (blob, manifest, hold).",
	}, []string{"kind"})
	m.gcBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "modelxd_gc_reclaimed_bytes_total", Help: "Bytes of blobs garbage collection deleted.",
	})
	m.gcDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "modelxd_gc_duration_seconds", Help: "Duration of garbage collections.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
	})
	m.storageErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelxd_storage_errors_total", Help: "Storage operations that failed (not counting not-found and lost compare-and-swap races), by operation.",
	}, []string{"op"})
	m.storageDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "modelxd_storage_operation_duration_seconds", Help: "Duration of storage operations (to the call's return; reads to the opening of the stream), by operation.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30},
	}, []string{"op"})
	m.uploadsInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "modelxd_uploads_in_flight", Help: "Blob uploads being proxied now.",
	})
	m.uploadsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelxd_uploads_refused_total", Help: "Uploads refused with 429 or cut, by the limit: max_uploads, max_uploads_per_identity, min_upload_rate, manifest_parse_memory.",
	}, []string{"limit"})
	m.manifestParseReserved = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "modelxd_manifest_parse_reserved_bytes", Help: "Memory reserved by the manifest PUTs being read and parsed now; at most --manifest-parse-memory.",
	})
	m.manifestParseWaiting = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "modelxd_manifest_parse_waiting", Help: "Manifest PUTs waiting for room in --manifest-parse-memory.",
	})
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.blobBytes, m.redirects, m.dedup, m.gcRuns, m.gcDeleted,
		m.gcBytes, m.gcDuration, m.storageErrors, m.storageDuration, m.uploadsInFlight, m.uploadsRefused,
		m.manifestParseReserved, m.manifestParseWaiting,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registerer is where more collectors for the same endpoint go.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// knownMethods are the HTTP methods that get their own label value; any
// other method is labelled "other", so made-up methods cannot add series.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPut: true, http.MethodPost: true,
	http.MethodDelete: true, http.MethodPatch: true, http.MethodOptions: true,
}

// methodLabel is a request's method as a label value: one of knownMethods, or "other".
func methodLabel(method string) string {
	if knownMethods[method] {
		return method
	}
	return "other"
}

// routeSet is the route patterns that get their own label value: those
// the router defines (learned once it is built) and the web UI's. Any
// other pattern is labelled "unmatched".
type routeSet map[string]bool

// uiRoutePattern is the one route label of every web UI request.
const uiRoutePattern = ui.Prefix + "*"

// modelRoutePattern is the pattern of a request below a model that the
// model's routes did not reach: refused by authentication, or an unknown
// path.
const modelRoutePattern = "/{repository}/{name}/*"

// learnRoutes returns the route patterns of router.
func learnRoutes(router chi.Routes) routeSet {
	routes := routeSet{uiRoutePattern: true, modelRoutePattern: true}
	_ = chi.Walk(router, func(_, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes[route] = true
		return nil // never fails, so neither does Walk
	})
	return routes
}

// label is a request's route pattern as a label value.
func (routes routeSet) label(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if p := rc.RoutePattern(); routes[p] {
			return p
		}
	}
	return "unmatched"
}

// instrument records every request's route, status and duration. The
// route is chi's pattern (e.g. /{repository}/{name}/blobs/{digest}), so
// the series stay few however many models there are; methods and routes
// outside the known ones share one label value each, so nothing a client
// sends adds series. routes is read only after the router is built.
func (m *Metrics) instrument(routes *routeSet) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ww, ok := w.(middleware.WrapResponseWriter)
			if !ok {
				ww = middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			}
			start := time.Now()
			next.ServeHTTP(ww, r)
			route, method := routes.label(r), methodLabel(r.Method)
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
			m.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
		})
	}
}

// recordGC counts one garbage collection.
func (m *Metrics) recordGC(res spec.GCResult, took time.Duration, err error) {
	var apiErr *spec.Error
	switch {
	case err == nil:
		m.gcRuns.WithLabelValues("ok").Inc()
	case errors.As(err, &apiErr) && apiErr.Code == spec.ErrorConflict:
		m.gcRuns.WithLabelValues("skipped").Inc()
	default:
		m.gcRuns.WithLabelValues("error").Inc()
	}
	m.gcDeleted.WithLabelValues("blob").Add(float64(res.BlobsDeleted))
	m.gcDeleted.WithLabelValues("manifest").Add(float64(res.ManifestsDeleted))
	m.gcDeleted.WithLabelValues("hold").Add(float64(res.HoldsExpired))
	m.gcBytes.Add(float64(res.BytesFreed))
	m.gcDuration.Observe(took.Seconds())
}

// countingReader adds the bytes read to a counter.
type countingReader struct {
	io.Reader
	c prometheus.Counter
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	r.c.Add(float64(n))
	return n, err
}

// storageObserver records the duration and failures of every storage
// call in the metrics, and gives each its own trace span: the Observer
// the registry wraps its backend with (storage.Wrap).
type storageObserver struct{ m *Metrics }

// Begin implements storage.Observer.
func (o storageObserver) Begin(ctx context.Context, op, key string) (context.Context, func(error)) {
	ctx, span := storageSpan(ctx, op, key)
	start := time.Now()
	return ctx, func(err error) {
		if errors.Is(err, storage.ErrNotModified) {
			err = nil // an unchanged object is what a conditional read hopes for
		}
		endSpan(span, err)
		o.m.storageDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
		if storageFailure(err) {
			o.m.storageErrors.WithLabelValues(op).Inc()
		}
	}
}

// storageFailure says whether a storage error counts as a failure of the
// store: not a missing object, a lost compare-and-swap race, a cancelled
// request or a client's wrong, short or too slow body.
func storageFailure(err error) bool {
	return err != nil && !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrPreconditionFailed) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, storage.ErrChecksumMismatch) && !errors.Is(err, storage.ErrSizeMismatch) &&
		!errors.Is(err, errUploadTooSlow)
}
