package storage

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
)

// VerifyingReader yields exactly size bytes of r and, when a sha256 is
// given, only bytes that hash to it. It withholds the final bytes until it
// has checked that r holds no more and that the hash matches, so a consumer
// that stops after size bytes (an HTTP transport with a Content-Length)
// never receives a complete body that is wrong.
type VerifyingReader struct {
	r         io.Reader
	remaining int64
	size      int64
	want      []byte
	hash      hash.Hash
	err       error
}

// NewVerifyingReader wraps r; sha256sum may be nil to check the length only.
func NewVerifyingReader(r io.Reader, size int64, sha256sum []byte) *VerifyingReader {
	v := &VerifyingReader{r: r, remaining: size, size: size, want: sha256sum}
	if sha256sum != nil {
		v.hash = sha256.New()
	}
	return v
}

// Read implements io.Reader.
func (v *VerifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.remaining == 0 {
		if err := v.finish(); err != nil {
			return 0, err
		}
		v.err = io.EOF
		return 0, io.EOF
	}
	if int64(len(p)) > v.remaining {
		p = p[:v.remaining]
	}
	n, err := v.r.Read(p)
	v.remaining -= int64(n)
	if v.hash != nil {
		v.hash.Write(p[:n])
	}
	if v.remaining == 0 {
		// Withhold the last bytes until the whole body is checked.
		if ferr := v.finish(); ferr != nil {
			return 0, ferr
		}
		return n, nil
	}
	if err == io.EOF {
		v.err = fmt.Errorf("%w: got %d bytes, want %d", ErrSizeMismatch, v.size-v.remaining, v.size)
		return n, v.err
	}
	if err != nil {
		v.err = err
	}
	return n, err
}

func (v *VerifyingReader) finish() error {
	var one [1]byte
	for {
		n, err := v.r.Read(one[:])
		if n > 0 {
			v.err = fmt.Errorf("%w: more than %d bytes", ErrSizeMismatch, v.size)
			return v.err
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			v.err = err
			return err
		}
	}
	if v.hash != nil {
		if got := v.hash.Sum(nil); !bytes.Equal(got, v.want) {
			v.err = fmt.Errorf("%w: got sha256:%x, want sha256:%x", ErrChecksumMismatch, got, v.want)
			return v.err
		}
		v.hash = nil
	}
	return nil
}
