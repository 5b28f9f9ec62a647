// Package storage defines the small streaming interface every registry
// backend implements, its typed errors, and the optional capabilities
// (presigning, conditional writes and reads, copies) callers discover by
// type assertion. Backends register by name (Register, Open), and one
// wrapper (Wrap) validates keys and observes calls for all of them.
// Keys are slash-separated relative paths; content-addressing lives above.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"modelx.io/modelx/content"
)

// Errors every backend returns, wrapped with the key; test with errors.Is.
var (
	// ErrNotFound means no object exists at the key.
	ErrNotFound = errors.New("object not found")
	// ErrPreconditionFailed means a conditional write lost: the object exists
	// (create-if-absent) or changed since it was read (replace-if-unchanged).
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrInvalidRange means a read started past the end of the object.
	ErrInvalidRange = errors.New("invalid range")
	// ErrInvalidKey means a key is empty, absolute or escapes the store.
	ErrInvalidKey = errors.New("invalid key")
	// ErrSizeMismatch means a Put's reader yielded a different number of bytes than announced.
	ErrSizeMismatch = content.ErrSizeMismatch
	// ErrChecksumMismatch means a Put's bytes did not match the sha256 announced.
	ErrChecksumMismatch = content.ErrDigestMismatch
	// ErrNotModified means a conditional read found the object unchanged.
	ErrNotModified = errors.New("not modified")
	// ErrTooLarge means ReadAll found an object over the size it accepts.
	ErrTooLarge = errors.New("object too large")
	// ErrInsufficientStorage means the store has no room (or quota) left for
	// a write; nothing was stored.
	ErrInsufficientStorage = errors.New("insufficient storage")
)

// Info describes a stored object.
type Info struct {
	// Key is the object's key.
	Key string
	// Size is the object's full length in bytes.
	Size int64
	// ModTime is when the object was last written.
	ModTime time.Time
	// ETag identifies this version of the object for conditional writes.
	ETag string
}

// Storage is the interface every backend implements.
type Storage interface {
	// Stat describes the object at key, or returns ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
	// Reader opens the object at key from offset for length bytes (length < 0:
	// to the end). Info describes the whole object as it was opened, so its
	// ETag matches the bytes read. An offset past the end is ErrInvalidRange.
	Reader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, Info, error)
	// Put stores exactly size bytes from r at key, replacing any object there.
	// The write is atomic: readers see the old object or the whole new one.
	// When sha256sum is set, the store verifies the bytes against it. If r
	// fails, yields other than size bytes (ErrSizeMismatch) or other bytes
	// (ErrChecksumMismatch), nothing is stored. Without sha256sum, whether an
	// upload aborted by a failing reader leaves a partial object is up to
	// the S3 server (AWS never does; some S3-compatible servers do). A store
	// out of space or quota returns ErrInsufficientStorage.
	Put(ctx context.Context, key string, r io.Reader, size int64, sha256sum []byte) error
	// List calls fn for every object whose key starts with prefix, in
	// lexical (byte-wise) key order, as S3 lists. An error from fn stops the
	// walk and is returned.
	List(ctx context.Context, prefix string, fn func(Info) error) error
	// Delete removes the object at key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// ConditionalWriter is the capability of atomic compare-and-swap writes of
// small documents, used for index updates by several registry replicas.
type ConditionalWriter interface {
	// PutIfAbsent stores data at key only if no object is there, else
	// returns ErrPreconditionFailed.
	PutIfAbsent(ctx context.Context, key string, data []byte) error
	// PutIfMatch replaces the object at key only if its ETag still equals
	// etag, else returns ErrPreconditionFailed (also when it is gone).
	PutIfMatch(ctx context.Context, key string, data []byte, etag string) error
}

// ConditionalReader is the capability of reading an object only if it
// changed since an earlier read, so a caller may keep the parsed object
// and revalidate it for the price of a stat.
type ConditionalReader interface {
	// ReaderIfChanged is Reader(ctx, key, 0, -1), except that it returns
	// ErrNotModified when the object's ETag still equals etag.
	ReaderIfChanged(ctx context.Context, key, etag string) (io.ReadCloser, Info, error)
}

// Copier is the capability of copying an object inside the store without
// moving its bytes through the caller (S3 CopyObject).
type Copier interface {
	// Copy stores at dst the object at src, atomically like Put; a missing
	// src is ErrNotFound.
	Copy(ctx context.Context, src, dst string) error
}

// Copy copies the object at src to dst: inside the store when it is a
// Copier, else by streaming it through this process. The copy must be
// size bytes hashing to sha256sum, or nothing is stored.
func Copy(ctx context.Context, s Storage, src, dst string, size int64, sha256sum []byte) error {
	if c, ok := s.(Copier); ok {
		return c.Copy(ctx, src, dst)
	}
	rc, _, err := s.Reader(ctx, src, 0, -1)
	if err != nil {
		return err
	}
	defer rc.Close()
	return s.Put(ctx, dst, rc, size, sha256sum)
}

// PresignedRequest is a request a client may send without credentials of its
// own: the URL, and the headers it must carry because they are signed.
type PresignedRequest struct {
	Method string
	URL    string
	Header http.Header
}

// Presigner is the capability of handing out time-limited URLs so clients
// move bytes straight to and from the object store.
type Presigner interface {
	// PresignGet returns a URL that reads the object at key until expires elapses.
	PresignGet(ctx context.Context, key string, expires time.Duration) (PresignedRequest, error)
	// PresignPut returns a URL that writes the object at key. The signature
	// covers Content-Length (size) and x-amz-checksum-sha256 (the base64 of
	// sha256sum), so the store itself rejects any other bytes.
	PresignPut(ctx context.Context, key string, size int64, sha256sum []byte, expires time.Duration) (PresignedRequest, error)
}

// ChecksumHeader is the header carrying the base64 of a body's sha256 on a presigned PUT.
const ChecksumHeader = "X-Amz-Checksum-Sha256"

// ValidateKey rejects keys that are empty, absolute, have empty, "." or ".."
// elements, or contain a backslash or NUL.
func ValidateKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.ContainsAny(key, "\\\x00") {
		return fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	for elem := range strings.SplitSeq(key, "/") {
		if elem == "" || elem == "." || elem == ".." {
			return fmt.Errorf("%w: %q", ErrInvalidKey, key)
		}
	}
	return nil
}

// ReadAll reads a whole small object, refusing objects over maxSize bytes.
func ReadAll(ctx context.Context, s Storage, key string, maxSize int64) ([]byte, Info, error) {
	rc, info, err := s.Reader(ctx, key, 0, -1)
	if err != nil {
		return nil, Info{}, err
	}
	return readAll(rc, info, maxSize)
}

// ReadAllIfChanged is ReadAll, except that it returns ErrNotModified when
// the object's ETag still equals etag (never when etag is empty).
func ReadAllIfChanged(ctx context.Context, s Storage, key, etag string, maxSize int64) ([]byte, Info, error) {
	rc, info, err := ReaderIfChanged(ctx, s, key, etag)
	if err != nil {
		return nil, info, err
	}
	return readAll(rc, info, maxSize)
}

// ReaderIfChanged is Reader(ctx, key, 0, -1), except that it returns
// ErrNotModified when the object's ETag still equals etag (never when etag
// is empty). A ConditionalReader skips the read; with other backends the
// object is opened and its ETag compared.
func ReaderIfChanged(ctx context.Context, s Storage, key, etag string) (io.ReadCloser, Info, error) {
	if cr, ok := s.(ConditionalReader); ok && etag != "" {
		return cr.ReaderIfChanged(ctx, key, etag)
	}
	rc, info, err := s.Reader(ctx, key, 0, -1)
	if err == nil && etag != "" && info.ETag == etag {
		rc.Close()
		return nil, info, fmt.Errorf("%w: %s", ErrNotModified, key)
	}
	return rc, info, err
}

// readAll reads exactly info.Size bytes from rc into one buffer and closes it.
func readAll(rc io.ReadCloser, info Info, maxSize int64) ([]byte, Info, error) {
	defer rc.Close()
	if info.Size > maxSize {
		return nil, Info{}, fmt.Errorf("%w: %s is %d bytes, over the limit of %d", ErrTooLarge, info.Key, info.Size, maxSize)
	}
	data := make([]byte, info.Size+1) // one byte more, to see a longer body
	n, err := io.ReadFull(rc, data)
	switch {
	case err == nil:
		return nil, Info{}, fmt.Errorf("read %s: more than the %d bytes announced", info.Key, info.Size)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		if int64(n) != info.Size {
			return nil, Info{}, fmt.Errorf("read %s: got %d bytes, want %d", info.Key, n, info.Size)
		}
		return data[:n], info, nil
	default:
		return nil, Info{}, fmt.Errorf("read %s: %w", info.Key, err)
	}
}
