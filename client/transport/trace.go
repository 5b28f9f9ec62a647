package transport

import (
	"context"
	"io"
	"net/http"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Tracing starts a client span for each request it sends, ended when the
// response body is closed (or the request fails). Requests to the
// registry's origin carry the trace in their headers and record their
// path; others (presigned URLs of an object store) get nothing that is not
// signed, and their span records only the host: a presigned URL's query
// is a signature.
type Tracing struct {
	// Next sends the request.
	Next http.RoundTripper
	// Registry is the registry's base URL.
	Registry string
}

// RoundTrip implements http.RoundTripper.
func (t *Tracing) RoundTrip(req *http.Request) (*http.Response, error) {
	registry := sameOrigin(req.URL, t.Registry)
	ctx, span := startSpan(req.Context(), req.Method, req.URL.Host, req.URL.Path, !registry)
	treq := req.WithContext(ctx)
	if registry {
		treq.Header = req.Header.Clone()
		otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(treq.Header))
	}
	resp, err := t.Next.RoundTrip(treq)
	if err != nil {
		span.End()
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	resp.Body = &spanBody{ReadCloser: resp.Body, span: span}
	return resp, nil
}

// startSpan starts the client span of one request; the path is recorded
// for registry requests only.
func startSpan(ctx context.Context, method, host, path string, presigned bool) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{attribute.String("http.request.method", method), attribute.String("server.address", host)}
	if !presigned {
		attrs = append(attrs, attribute.String("url.path", path))
	}
	attrs = append(attrs, attribute.Bool("modelx.presigned", presigned))
	return otel.GetTracerProvider().Tracer("modelx.io/modelx/client").Start(ctx, "HTTP "+method,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// spanBody ends its span when closed.
type spanBody struct {
	io.ReadCloser
	span trace.Span
	once sync.Once
}

func (b *spanBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { b.span.End() })
	return err
}
