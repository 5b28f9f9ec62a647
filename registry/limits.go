package registry

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"modelx.io/modelx/spec"
)

// Defaults of the request limits in Options.
const (
	defaultIOTimeout     = time.Minute
	defaultMaxUploads    = 64
	uploadRetryAfterSecs = 1
)

// ioDeadlines aborts a request whose body or response stops moving for
// idle: every read of the body and every write of the response pushes the
// connection's deadline out again. A client that trickles bytes (slow
// loris), or stops reading a download, cannot hold a connection and a
// goroutine for long, while a multi-GiB transfer that keeps moving takes as
// long as it needs. The server's ReadHeaderTimeout still bounds the headers.
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

// uploadSlots bounds the blob uploads proxied at once: each holds a
// connection, a goroutine and a storage write. Past the bound, the answer
// is 429 with Retry-After, which clients retry.
type uploadSlots chan struct{}

func (s uploadSlots) acquire(w http.ResponseWriter, inFlight prometheus.Gauge) (release func(), err error) {
	select {
	case s <- struct{}{}:
		inFlight.Inc()
		return func() { inFlight.Dec(); <-s }, nil
	default:
		w.Header().Set("Retry-After", strconv.Itoa(uploadRetryAfterSecs))
		return nil, spec.Errorf(spec.ErrorTooManyRequests, "the registry is receiving %d uploads already; retry shortly", cap(s))
	}
}
