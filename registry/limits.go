package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"modelx.io/modelx/internal/humanize"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
)

// Defaults of the request limits in Options, and the fixed parts of the
// upload rate floor.
const (
	defaultIOTimeout             = time.Minute
	defaultMaxUploads            = 64
	defaultMaxUploadsPerIdentity = 16
	defaultMinUploadRate         = 64 << 10 // bytes per second
	uploadRateGrace              = 10 * time.Second
	uploadRateWindow             = 10 * time.Second
	uploadRetryAfterSecs         = 1
	defaultManifestParseMemory   = 256 << 20
	manifestQueueWait            = 30 * time.Second
)

// manifestParseCost is the memory a manifest PUT is counted for, per byte
// of its body: the body itself, the growth of the buffer it is read into,
// decoding, and the parsed manifest. Parsing a 16 MiB manifest of 97,000
// files allocates 2.4 times its size, and the parsed manifest holds 1.1
// times its size.
const manifestParseCost = 4

// ioDeadlines aborts a request whose body or response stops moving for
// idle: every read of the body and every write of the response pushes the
// connection's deadline out again. A client that stops sending, or stops
// reading a download, cannot hold a connection and a goroutine for long,
// while a multi-GiB transfer that keeps moving takes as long as it needs.
// A client that trickles a byte now and then keeps the deadline moving:
// the rate floor of uploads (rateFloor) cuts that. The server's
// ReadHeaderTimeout still bounds the headers.
func ioDeadlines(idle time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			extendRead := func() { _ = rc.SetReadDeadline(time.Now().Add(idle)) }
			extendWrite := func() { _ = rc.SetWriteDeadline(time.Now().Add(idle)) }
			extendRead()
			extendWrite()
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = &deadlineBody{ReadCloser: r.Body, extend: extendRead}
			}
			next.ServeHTTP(&deadlineWriter{ResponseWriter: w, extend: extendWrite}, r)
		})
	}
}

type deadlineBody struct {
	io.ReadCloser
	extend func()
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	b.extend()
	return b.ReadCloser.Read(p)
}

type deadlineWriter struct {
	http.ResponseWriter
	extend func()
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.extend()
	return w.ResponseWriter.Write(p)
}

// deadlineStep is how much a download copies between deadline extensions
// when it can hand the copy to the connection (sendfile).
const deadlineStep = 8 << 20

// ReadFrom keeps the connection's zero-copy path for downloads, in steps
// that each get a fresh deadline.
func (w *deadlineWriter) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{w}, src)
	}
	var total int64
	for {
		w.extend()
		n, err := rf.ReadFrom(io.LimitReader(src, deadlineStep))
		total += n
		if err != nil || n < deadlineStep {
			return total, err
		}
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes on flushes.
func (w *deadlineWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		w.extend()
		f.Flush()
	}
}

// uploadLimits bounds the blob uploads proxied at once, in all and per
// uploader, and cuts an upload whose body arrives slower than a floor.
// Each upload holds a connection, a goroutine and a storage write; with a
// bound per uploader, one identity (or one client address) cannot take
// every slot, and with the floor, a client that trickles its body cannot
// hold its slot for long. Past a bound, the answer is 429 with
// Retry-After, which clients retry.
type uploadLimits struct {
	slots       chan struct{}
	perUploader int
	floor       rateFloor
	trusted     []netip.Prefix
	m           *Metrics
	log         *slog.Logger

	mu       sync.Mutex
	inFlight map[string]int // by uploaderOf key; no entry at 0
}

func newUploadLimits(opts Options, m *Metrics) *uploadLimits {
	return &uploadLimits{
		slots:       make(chan struct{}, opts.MaxUploads),
		perUploader: opts.MaxUploadsPerIdentity,
		floor:       rateFloor{bytesPerSec: max(opts.MinUploadRate, 0), grace: uploadRateGrace, window: uploadRateWindow, clock: time.Now},
		trusted:     opts.TrustedProxies,
		m:           m,
		log:         opts.Logger,
		inFlight:    map[string]int{},
	}
}

// acquire takes an upload slot for r, or answers why not. On success it
// puts the rate floor on r.Body; release gives the slot back.
func (l *uploadLimits) acquire(w http.ResponseWriter, r *http.Request) (release func(), err error) {
	key, who := uploaderOf(r, l.trusted)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inFlight[key] >= l.perUploader {
		refuse(w, l.m, "max_uploads_per_identity")
		return nil, spec.Errorf(spec.ErrorTooManyRequests,
			"%s has %d uploads in flight already, the most one uploader may have (--max-uploads-per-identity); retry when one finishes", who, l.perUploader)
	}
	select {
	case l.slots <- struct{}{}:
	default:
		refuse(w, l.m, "max_uploads")
		return nil, spec.Errorf(spec.ErrorTooManyRequests, "the registry is receiving %d uploads already (--max-uploads); retry shortly", cap(l.slots))
	}
	l.inFlight[key]++
	l.m.uploadsInFlight.Inc()
	l.guard(w, r, who)
	return func() {
		l.m.uploadsInFlight.Dec()
		<-l.slots
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.inFlight[key]--; l.inFlight[key] <= 0 {
			delete(l.inFlight, key)
		}
	}, nil
}

// guard puts the rate floor on r.Body, when there is one. A body cut for
// being too slow fails every later read with an error that answers 429
// (a *spec.Error in its chain), and stops the connection's reads, so the
// server does not wait for the rest of the body before it answers.
func (l *uploadLimits) guard(w http.ResponseWriter, r *http.Request, who string) {
	if l.floor.bytesPerSec <= 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	ctx := r.Context()
	r.Body = &floorBody{ReadCloser: r.Body, floor: l.floor, cut: func(rate float64) error {
		l.log.WarnContext(ctx, "upload cut: slower than the floor", "uploader", who, "path", r.URL.Path,
			"bytes_per_second", int64(rate), "floor", l.floor.bytesPerSec)
		refuse(w, l.m, "min_upload_rate")
		return fmt.Errorf("%w: %w", errUploadTooSlow, spec.Errorf(spec.ErrorTooManyRequests,
			"the upload arrived at %s/s, slower than the registry's floor of %s/s (--min-upload-rate); nothing was stored. Retry, with fewer parallel transfers on a slow link",
			humanize.Bytes(int64(rate)), humanize.Bytes(l.floor.bytesPerSec)))
	}}
}

// refuse prepares the 429 of an upload that a limit refused or cut: it
// counts it, asks the client to retry after a pause, and stops reading the
// request. The server would otherwise read what is left of a small body
// before it answers, so a client sending it slowly would wait for its
// refusal, holding the connection; this way the answer goes out at once
// and the connection closes unless the body was all there.
func refuse(w http.ResponseWriter, m *Metrics, limit string) {
	m.uploadsRefused.WithLabelValues(limit).Inc()
	w.Header().Set("Retry-After", strconv.Itoa(uploadRetryAfterSecs))
	_ = http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0))
}

// manifestBudget bounds the memory that manifest PUTs take at once: each
// reserves its estimated cost (manifestParseCost × its Content-Length, or
// × the size limit when the length is unknown) before it reads its body,
// and holds it until it is answered. Requests that find no room queue, in
// order, for up to wait, then get 429 with Retry-After; one whose context
// ends (the server saw its client go) stops waiting. Many concurrent
// pushes of large manifests thus cost bounded memory instead of each
// parsing at once.
type manifestBudget struct {
	sem      *semaphore.Weighted
	size     int64
	wait     time.Duration
	reserved prometheus.Gauge
	waiting  prometheus.Gauge
	m        *Metrics
}

func newManifestBudget(size int64, m *Metrics) *manifestBudget {
	return &manifestBudget{sem: semaphore.NewWeighted(size), size: size, wait: manifestQueueWait,
		reserved: m.manifestParseReserved, waiting: m.manifestParseWaiting, m: m}
}

// acquire reserves the memory of a manifest PUT of r whose body may be at
// most limit bytes. A body declared over the limit reserves nothing: it is
// refused before it is read.
func (b *manifestBudget) acquire(w http.ResponseWriter, r *http.Request, limit int64) (release func(), err error) {
	n := r.ContentLength
	switch {
	case n > limit:
		return func() {}, nil
	case n < 0:
		n = limit
	}
	weight := min(max(n, 1)*manifestParseCost, b.size) // the biggest runs alone
	ctx, cancel := context.WithTimeout(r.Context(), b.wait)
	defer cancel()
	b.waiting.Inc()
	err = b.sem.Acquire(ctx, weight)
	b.waiting.Dec()
	if err != nil {
		if cause := r.Context().Err(); cause != nil {
			return nil, cause // the client went away
		}
		refuse(w, b.m, "manifest_parse_memory")
		return nil, spec.Errorf(spec.ErrorTooManyRequests,
			"the registry is reading as many manifests as its memory budget of %s allows (--manifest-parse-memory); retry shortly", humanize.Bytes(b.size))
	}
	b.reserved.Add(float64(weight))
	return func() {
		b.reserved.Sub(float64(weight))
		b.sem.Release(weight)
	}, nil
}

// admitManifest lets a manifest PUT in: it reserves the memory of reading
// and parsing the body (manifestBudget) and puts the rate floor on it, as
// on a blob upload. release must be called once the PUT is answered.
func (reg *Registry) admitManifest(w http.ResponseWriter, r *http.Request) (release func(), err error) {
	release, err = reg.manifestBudget.acquire(w, r, reg.opts.MaxManifestSize)
	if err != nil {
		return nil, err
	}
	_, who := uploaderOf(r, reg.opts.TrustedProxies)
	reg.uploads.guard(w, r, who)
	return release, nil
}

// errUploadTooSlow marks the error of a body cut by the rate floor: the
// client's doing, not a storage failure.
var errUploadTooSlow = errors.New("upload slower than the floor")

// uploaderOf names who an upload counts against: the authenticated
// identity, or the client's address for an anonymous request. key
// identifies the uploader; who names it in messages.
func uploaderOf(r *http.Request, trusted []netip.Prefix) (key, who string) {
	if id := identityOf(r.Context()); id != nil {
		return identityLimitKey(id), id.String()
	}
	addr := clientAddr(r, trusted)
	return "address " + addr, "client address " + addr
}

// identityLimitKey is the one place that says which identities share
// limits: the same kind and name vouched for by the same issuer (robots
// have none).
func identityLimitKey(id *auth.Identity) string {
	return "identity " + strconv.Quote(id.Issuer) + " " + id.String()
}

// clientAddr is the address of the client that sent r, for limits. It is
// the connection's peer, unless the peer is a trusted proxy: then it is the
// nearest address in X-Forwarded-For that is not a trusted proxy, read from
// the right, where the trusted proxies appended it. Nothing a client sends
// is believed otherwise. An IPv6 client is its /64, which one host usually
// holds whole.
func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	addr := peer.Addr().Unmap()
	if isTrusted(addr, trusted) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // malformed: keep the nearest hop that parsed
			}
			addr = hop.Unmap()
			if !isTrusted(addr, trusted) {
				break
			}
		}
	}
	if addr.Is6() {
		return netip.PrefixFrom(addr, 64).Masked().String()
	}
	return addr.String()
}

func isTrusted(addr netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// rateFloor is the slowest a proxied upload's body may arrive: after
// grace, every window must bring at least bytesPerSec × window. Only the
// time spent waiting for the client's bytes counts, not the time the
// storage backend takes to write them, so a slow backend never makes an
// upload look slow.
type rateFloor struct {
	bytesPerSec   int64
	grace, window time.Duration
	clock         func() time.Time
}

// floorBody is a request body under a rateFloor; cut builds the error of a
// body that fell below it, given the rate it arrived at.
type floorBody struct {
	io.ReadCloser
	floor rateFloor
	cut   func(rate float64) error

	waited     time.Duration // in Read, in all
	windowWait time.Duration // in Read, in this window (after the grace)
	windowRead int64
	err        error
}

func (b *floorBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	start := b.floor.clock()
	n, err := b.ReadCloser.Read(p)
	d := b.floor.clock().Sub(start)
	b.waited += d
	if err != nil || b.waited <= b.floor.grace {
		return n, err
	}
	b.windowWait += d
	b.windowRead += int64(n)
	if b.windowWait >= b.floor.window {
		rate := float64(b.windowRead) / b.windowWait.Seconds()
		if rate < float64(b.floor.bytesPerSec) {
			b.err = b.cut(rate)
			return n, b.err
		}
		b.windowWait, b.windowRead = 0, 0
	}
	return n, nil
}
