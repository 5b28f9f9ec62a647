package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
)

// Bounds of holds: a hold names at most MaxHoldDigests manifests, a model
// has at most MaxHoldsPerModel holds, and a holder name is at most
// MaxHolderLength characters.
const (
	MaxHoldDigests   = 8
	MaxHoldsPerModel = 1024
	MaxHolderLength  = 253
	// DefaultHoldTTL is how long a hold lasts when its request names no
	// ttl (or less when the registry's --max-hold-ttl is shorter).
	DefaultHoldTTL = 7 * 24 * time.Hour
	// MaxHoldRequestSize bounds the body of a hold PUT.
	MaxHoldRequestSize = 16 << 10
)

// Hold is a named reference, put by its holder, that keeps manifests of
// one model (and so their blobs) from garbage collection until it expires,
// whether or not a tag points to them. An expired hold holds nothing.
type Hold struct {
	// Holder names the hold within its model; see ValidateHolder.
	Holder string `json:"holder"`
	// Digests are the manifests held.
	Digests []digest.Digest `json:"digests"`
	// Created is when the holder first put the hold; Renewed is when it
	// last put it.
	Created time.Time `json:"created"`
	Renewed time.Time `json:"renewed"`
	// Expires is when the hold stops holding unless it is put again.
	Expires time.Time `json:"expires"`
}

// Expired reports whether the hold holds nothing any more at now.
func (h Hold) Expired(now time.Time) bool { return !now.Before(h.Expires) }

// Holds reports whether the unexpired hold names d.
func (h Hold) Holds(d digest.Digest, now time.Time) bool {
	return !h.Expired(now) && slices.Contains(h.Digests, d)
}

// HoldRequest is the body of PUT /{repository}/{name}/holds/{holder}.
type HoldRequest struct {
	// Digests are the manifests of the model to hold: 1 to MaxHoldDigests.
	Digests []digest.Digest `json:"digests"`
	// TTL is how long the hold lasts from now, as a Go duration ("24h",
	// "90m"); empty means DefaultHoldTTL.
	TTL string `json:"ttl,omitempty"`
}

// HoldList is what GET /{repository}/{name}/holds answers: the model's
// unexpired holds, by holder name.
type HoldList struct {
	Holds []Hold `json:"holds"`
}

var holderPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)

// ValidateHolder checks a holder name: letters, digits, '.', '_', ':' and
// '-', starting with a letter or digit, at most MaxHolderLength characters.
func ValidateHolder(holder string) error {
	if holder == "" {
		return Errorf(ErrorNameInvalid, "holder is empty")
	}
	if len(holder) > MaxHolderLength || !holderPattern.MatchString(holder) {
		shown := holder
		if len(shown) > 64 {
			shown = shown[:64] + "…"
		}
		return Errorf(ErrorNameInvalid, "holder %q is invalid: use letters, digits, '.', '_', ':' and '-', starting with a letter or digit (at most %d characters)", shown, MaxHolderLength)
	}
	return nil
}

// ParseHoldRequest decodes and checks a hold request: known fields only,
// 1 to MaxHoldDigests well-formed digests (duplicates dropped), and a
// positive ttl. It returns the digests and the ttl, 0 when none was given.
func ParseHoldRequest(data []byte) ([]digest.Digest, time.Duration, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var req HoldRequest
	if err := dec.Decode(&req); err != nil {
		return nil, 0, Errorf(ErrorHoldInvalid, "the hold request is not {\"digests\": [\"sha256:…\"], \"ttl\": \"24h\"}: %v", err)
	}
	if dec.More() {
		return nil, 0, Errorf(ErrorHoldInvalid, "the hold request holds more than one JSON document")
	}
	if len(req.Digests) == 0 {
		return nil, 0, Errorf(ErrorHoldInvalid, "the hold names no digest: give 1 to %d manifest digests (to release a hold, DELETE it)", MaxHoldDigests)
	}
	var digests []digest.Digest
	for _, d := range req.Digests {
		if err := ValidateDigest(d); err != nil {
			return nil, 0, err
		}
		if !slices.Contains(digests, d) {
			digests = append(digests, d)
		}
	}
	if len(digests) > MaxHoldDigests {
		return nil, 0, Errorf(ErrorHoldInvalid, "the hold names %d digests, over the limit of %d per hold: put several holds", len(digests), MaxHoldDigests)
	}
	var ttl time.Duration
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 {
			return nil, 0, Errorf(ErrorHoldInvalid, "ttl %q is invalid: want a positive Go duration such as 24h or 90m", truncate(req.TTL, 64))
		}
	}
	return digests, ttl, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return fmt.Sprintf("%s…", s[:n])
	}
	return s
}
