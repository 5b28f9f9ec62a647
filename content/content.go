// Package content checks content-addressed bytes: that what a stream or a
// buffer holds is exactly the size and sha256 digest a descriptor names.
// The registry reads every uploaded blob through it before it commits one,
// and the client every downloaded or locally reused byte before a file is
// put in place. A mismatch is ErrSizeMismatch or ErrDigestMismatch,
// wrapped with what was found; test with errors.Is.
package content

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
)

var (
	// ErrSizeMismatch means the content is shorter or longer than its size.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrDigestMismatch means the content's sha256 is not its digest.
	ErrDigestMismatch = errors.New("digest mismatch")
)

// IsMismatch reports whether err says the content is not what was expected
// (ErrSizeMismatch or ErrDigestMismatch), as opposed to a failure to read it.
func IsMismatch(err error) bool {
	return errors.Is(err, ErrSizeMismatch) || errors.Is(err, ErrDigestMismatch)
}

// Verifier counts and hashes the bytes written to it, which are to be
// content of size bytes with a digest; Verify gives the verdict. Its
// Reader continues from what was written, so bytes already on hand (a
// partial download) and bytes still to come are checked as one.
type Verifier struct {
	size, n int64
	want    []byte    // the expected sha256; nil: the size alone is checked
	hash    hash.Hash // nil with want
	err     error     // an expected digest that cannot be checked
}

// NewVerifier expects size bytes with digest d, which must be a sha256
// digest; an empty d checks the size alone.
func NewVerifier(size int64, d digest.Digest) *Verifier {
	v := &Verifier{size: size}
	if d == "" {
		return v
	}
	// Validate first: Algorithm and Encoded panic on a digest with no ':'.
	if d.Validate() != nil || d.Algorithm() != digest.SHA256 {
		v.err = fmt.Errorf("content: %q is not a sha256 digest", d)
		return v
	}
	sum, err := hex.DecodeString(d.Encoded())
	if err != nil || len(sum) != sha256.Size {
		v.err = fmt.Errorf("content: %q is not a sha256 digest", d)
		return v
	}
	v.want, v.hash = sum, sha256.New()
	return v
}

// NewSHA256Verifier expects size bytes whose sha256 is sum; a nil sum
// checks the size alone.
func NewSHA256Verifier(size int64, sum []byte) *Verifier {
	v := &Verifier{size: size}
	if sum != nil {
		v.want, v.hash = sum, sha256.New()
	}
	return v
}

// Write counts and hashes p; it never fails.
func (v *Verifier) Write(p []byte) (int, error) {
	v.n += int64(len(p))
	if v.hash != nil {
		v.hash.Write(p)
	}
	return len(p), nil
}

// Written is the number of bytes seen so far.
func (v *Verifier) Written() int64 { return v.n }

// Size is the size of the content expected.
func (v *Verifier) Size() int64 { return v.size }

// Reset forgets the bytes seen, to start the content over.
func (v *Verifier) Reset() {
	v.n = 0
	if v.hash != nil {
		v.hash.Reset()
	}
}

// Verify reports whether the bytes seen are the content: ErrSizeMismatch
// when there were fewer or more than size, ErrDigestMismatch when their
// digest differs.
func (v *Verifier) Verify() error {
	switch {
	case v.err != nil:
		return v.err
	case v.n < v.size:
		return fmt.Errorf("%w: got %d bytes, want %d", ErrSizeMismatch, v.n, v.size)
	case v.n > v.size:
		return fmt.Errorf("%w: more than %d bytes", ErrSizeMismatch, v.size)
	}
	if v.hash != nil {
		if got := v.hash.Sum(nil); !bytes.Equal(got, v.want) {
			return fmt.Errorf("%w: got sha256:%x, want sha256:%x", ErrDigestMismatch, got, v.want)
		}
	}
	return nil
}

// Reader yields the rest of the content from r: the bytes up to size that
// were not written to v yet. See Reader.
func (v *Verifier) Reader(r io.Reader) *Reader {
	return &Reader{r: r, v: v, err: v.err}
}

// Reader yields exactly the bytes of expected content and fails with
// ErrSizeMismatch or ErrDigestMismatch instead of yielding anything else.
// It withholds the last bytes until it has checked that its source holds
// no more and that the digest matches, so a consumer that stops after
// size bytes (an HTTP transport with a Content-Length, a copy into a file
// about to be renamed) never receives a complete body that is wrong. Its
// errors are sticky. It hashes each byte once, as it passes.
type Reader struct {
	r        io.Reader
	v        *Verifier
	err      error
	verified bool
}

// NewReader reads r, which is to hold size bytes with digest d (a sha256
// digest; empty to check the size alone).
func NewReader(r io.Reader, size int64, d digest.Digest) *Reader {
	return NewVerifier(size, d).Reader(r)
}

// Read implements io.Reader.
func (cr *Reader) Read(p []byte) (int, error) {
	if cr.err != nil {
		return 0, cr.err
	}
	v := cr.v
	remaining := v.size - v.n
	if remaining <= 0 {
		if cr.verified {
			cr.err = io.EOF
			return 0, io.EOF
		}
		if err := cr.finish(); err != nil {
			return 0, err
		}
		cr.err = io.EOF
		return 0, io.EOF
	}
	if int64(len(p)) > remaining {
		p = p[:remaining]
	}
	n, err := cr.r.Read(p)
	v.Write(p[:n])
	if v.n == v.size {
		// Withhold the last bytes until the whole content is checked.
		if ferr := cr.finish(); ferr != nil {
			return 0, ferr
		}
		return n, nil
	}
	if err == io.EOF {
		cr.err = fmt.Errorf("%w: got %d bytes, want %d", ErrSizeMismatch, v.n, v.size)
		return n, cr.err
	}
	if err != nil {
		cr.err = err
	}
	return n, err
}

// finish checks, once size bytes were read, that the source ends there
// and that the digest matches.
func (cr *Reader) finish() error {
	if cr.v.n > cr.v.size { // more was written to the verifier than the size
		cr.err = cr.v.Verify()
		return cr.err
	}
	var one [1]byte
	for {
		n, err := cr.r.Read(one[:])
		if n > 0 {
			cr.err = fmt.Errorf("%w: more than %d bytes", ErrSizeMismatch, cr.v.size)
			return cr.err
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			cr.err = err
			return err
		}
	}
	if err := cr.v.Verify(); err != nil {
		cr.err = err
		return err
	}
	cr.verified = true // a later Read is io.EOF, not a second check
	return nil
}

// Holds reports whether r yields exactly size bytes with digest d, reading
// it through buf (any size; nil allocates one). Content that differs is
// (false, nil); a failure to read r is returned.
func Holds(r io.Reader, size int64, d digest.Digest, buf []byte) (bool, error) {
	if buf == nil {
		buf = make([]byte, 32<<10)
	}
	_, err := io.CopyBuffer(discard{}, NewReader(r, size, d), buf)
	if IsMismatch(err) {
		return false, nil
	}
	return err == nil, err
}

// discard is io.Discard without its ReadFrom, so Holds reads through the
// caller's buffer.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// VerifyBytes reports whether data is exactly size bytes with digest d:
// nil, or ErrSizeMismatch or ErrDigestMismatch wrapped with what data is.
func VerifyBytes(data []byte, size int64, d digest.Digest) error {
	v := NewVerifier(size, d)
	v.Write(data)
	return v.Verify()
}
