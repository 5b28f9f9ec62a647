package storage

import (
	"io"

	"modelx.io/modelx/content"
)

// NewVerifyingReader wraps r in content's verifying reader: it yields
// exactly size bytes and, when sha256sum is given, only bytes that hash to
// it, withholding the last bytes until both are checked. Its mismatches are
// ErrSizeMismatch and ErrChecksumMismatch. A backend's Put reads through
// it, so no backend commits a wrong body.
func NewVerifyingReader(r io.Reader, size int64, sha256sum []byte) *content.Reader {
	return content.NewSHA256Verifier(size, sha256sum).Reader(r)
}
