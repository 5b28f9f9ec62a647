package content

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"
)

func TestReader(t *testing.T) {
	data := []byte("the bytes of a blob")
	d := digest.FromBytes(data)
	tests := []struct {
		name    string
		r       io.Reader
		size    int64
		d       digest.Digest
		wantErr error
	}{
		{"exact", bytes.NewReader(data), int64(len(data)), d, nil},
		{"exact, one byte at a time", iotest.OneByteReader(bytes.NewReader(data)), int64(len(data)), d, nil},
		{"exact, size only", bytes.NewReader(data), int64(len(data)), "", nil},
		{"empty", strings.NewReader(""), 0, digest.FromBytes(nil), nil},
		{"short", bytes.NewReader(data[:5]), int64(len(data)), d, ErrSizeMismatch},
		{"short, size only", bytes.NewReader(data[:5]), int64(len(data)), "", ErrSizeMismatch},
		{"trailing bytes", io.MultiReader(bytes.NewReader(data), strings.NewReader("!")), int64(len(data)), d, ErrSizeMismatch},
		{"trailing bytes, size only", bytes.NewReader(data), 4, "", ErrSizeMismatch},
		{"wrong digest", bytes.NewReader(data), int64(len(data)), digest.FromString("other"), ErrDigestMismatch},
		{"one byte changed", bytes.NewReader(append([]byte("T"), data[1:]...)), int64(len(data)), d, ErrDigestMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := io.ReadAll(NewReader(tc.r, tc.size, tc.d))
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("ReadAll: %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				if !IsMismatch(err) {
					t.Errorf("IsMismatch(%v) = false", err)
				}
				if int64(len(got)) >= tc.size && tc.size > 0 {
					t.Errorf("yielded all %d bytes of wrong content; the last must be withheld", len(got))
				}
				return
			}
			if int64(len(got)) != tc.size {
				t.Errorf("yielded %d bytes, want %d", len(got), tc.size)
			}
		})
	}
}

func TestReaderErrorsAreSticky(t *testing.T) {
	r := NewReader(strings.NewReader("abc"), 3, digest.FromString("abd"))
	if _, err := io.ReadAll(r); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("ReadAll: %v", err)
	}
	if _, err := r.Read(nil); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Read after the failure: %v, want the same ErrDigestMismatch", err)
	}
	ok := NewReader(strings.NewReader("abc"), 3, digest.FromString("abc"))
	if _, err := io.ReadAll(ok); err != nil {
		t.Fatal(err)
	}
	if _, err := ok.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("Read after the end: %v, want io.EOF", err)
	}
}

func TestReaderPassesReadErrors(t *testing.T) {
	boom := errors.New("boom")
	_, err := io.ReadAll(NewReader(iotest.ErrReader(boom), 3, ""))
	if !errors.Is(err, boom) || IsMismatch(err) {
		t.Fatalf("ReadAll: %v, want boom", err)
	}
}

func TestReaderRejectsOtherDigests(t *testing.T) {
	for _, d := range []digest.Digest{"sha512:" + digest.Digest(strings.Repeat("0", 128)), "sha256:zz", "sha256:00", "0", "sha256", ":", "sha256:"} {
		if _, err := io.ReadAll(NewReader(strings.NewReader("x"), 1, d)); err == nil {
			t.Errorf("%s: accepted", d)
		}
	}
}

// TestVerifierResumes checks content whose first bytes were on hand (a
// partial download) and the rest comes from a reader.
func TestVerifierResumes(t *testing.T) {
	data := []byte("0123456789")
	d := digest.FromBytes(data)
	v := NewVerifier(10, d)
	v.Write(data[:4])
	got, err := io.ReadAll(v.Reader(bytes.NewReader(data[4:])))
	if err != nil || string(got) != "456789" {
		t.Fatalf("ReadAll: %q, %v", got, err)
	}
	if err := v.Verify(); err != nil {
		t.Fatalf("Verify after the reader: %v", err)
	}
	v = NewVerifier(10, d)
	v.Write(data[:4])
	if _, err := io.ReadAll(v.Reader(strings.NewReader("45678X"))); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("a wrong rest: %v", err)
	}
	v = NewVerifier(3, "")
	v.Write(data[:4])
	if _, err := io.ReadAll(v.Reader(strings.NewReader(""))); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("more written than the size: %v", err)
	}
	v.Reset()
	v.Write(data[:3])
	if err := v.Verify(); err != nil || v.Written() != 3 {
		t.Fatalf("after Reset: %v, %d written", err, v.Written())
	}
}

func TestSHA256Verifier(t *testing.T) {
	sum := sha256.Sum256([]byte("abc"))
	raw := sum[:]
	if _, err := io.ReadAll(NewSHA256Verifier(3, raw).Reader(strings.NewReader("abc"))); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(NewSHA256Verifier(3, raw).Reader(strings.NewReader("abd"))); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("wrong bytes: %v", err)
	}
	if _, err := io.ReadAll(NewSHA256Verifier(3, nil).Reader(strings.NewReader("abd"))); err != nil {
		t.Fatalf("size only: %v", err)
	}
}

func TestHolds(t *testing.T) {
	data := []byte("chunk of a file")
	d := digest.FromBytes(data)
	for _, tc := range []struct {
		name string
		r    io.Reader
		want bool
	}{
		{"exact", bytes.NewReader(data), true},
		{"short", io.NewSectionReader(bytes.NewReader(data), 0, 5), false},
		{"long", io.MultiReader(bytes.NewReader(data), strings.NewReader("x")), false},
		{"other", strings.NewReader("chunk of a filE"), false},
	} {
		ok, err := Holds(tc.r, int64(len(data)), d, make([]byte, 4))
		if err != nil || ok != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.name, ok, err, tc.want)
		}
	}
	boom := errors.New("boom")
	if ok, err := Holds(iotest.ErrReader(boom), 1, d, nil); ok || !errors.Is(err, boom) {
		t.Errorf("a failing reader: %v, %v", ok, err)
	}
}

func TestVerifyBytes(t *testing.T) {
	d := digest.FromString("abc")
	if err := VerifyBytes([]byte("abc"), 3, d); err != nil {
		t.Error(err)
	}
	if err := VerifyBytes([]byte("abcd"), 3, d); !errors.Is(err, ErrSizeMismatch) {
		t.Errorf("long: %v", err)
	}
	if err := VerifyBytes([]byte("ab"), 3, d); !errors.Is(err, ErrSizeMismatch) {
		t.Errorf("short: %v", err)
	}
	if err := VerifyBytes([]byte("abd"), 3, d); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("other: %v", err)
	}
}
