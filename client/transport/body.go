package transport

import (
	"io"
)

// LocalError is a failure on this side of the connection, such as a
// request body that could not be opened or a token that could not be had:
// sending the request again does not mend it, so Retry returns it at once.
type LocalError struct {
	Err error
}

// Error returns the cause's message.
func (e *LocalError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *LocalError) Unwrap() error { return e.Err }

// LazyBody returns a GetBody for a request: each body it returns calls
// open on its first read, so a request answered before it sends its body
// (an Expect: 100-continue the server refuses) never opens it, and each
// attempt reads from a fresh open. A failed open is returned by Read as a
// *LocalError. Set both the request's GetBody and, from one call of it,
// its Body.
func LazyBody(open func() (io.ReadCloser, error)) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return &lazyBody{open: open}, nil }
}

// lazyBody is one attempt's request body.
type lazyBody struct {
	open    func() (io.ReadCloser, error)
	rc      io.ReadCloser
	openErr error
}

func (l *lazyBody) Read(p []byte) (int, error) {
	if l.rc == nil {
		if l.openErr != nil {
			return 0, l.openErr
		}
		rc, err := l.open()
		if err != nil {
			l.openErr = &LocalError{Err: err}
			return 0, l.openErr
		}
		l.rc = rc
	}
	return l.rc.Read(p)
}

func (l *lazyBody) Close() error {
	if l.rc == nil {
		return nil
	}
	return l.rc.Close()
}
