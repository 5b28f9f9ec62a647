package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/spec"
)

// ErrHoldUnknown matches (errors.Is) the error of ReleaseHold when the
// model has no such hold: it was released already, or it expired.
var ErrHoldUnknown = errors.New("no such hold")

// Is lets errors.Is match the registry's HOLD_UNKNOWN answer to ErrHoldUnknown.
func (e *Error) Is(target error) bool {
	return target == ErrHoldUnknown && e.API.Code == spec.ErrorHoldUnknown
}

// maxHoldAnswer bounds the answer to a hold request or listing: a model
// has at most spec.MaxHoldsPerModel holds of about 1 KiB each.
const maxHoldAnswer = 4 << 20

func holdsPath(repo, name string) string { return modelPath(repo, name) + "/holds" }

// PutHold creates or renews the hold named holder on the manifests digests
// of the model, for ttl from now (0: the registry's default, 7 days, or
// less under its --max-hold-ttl), and returns the hold as stored. Putting
// a hold again replaces its digests and expiry.
func (a *API) PutHold(ctx context.Context, repo, name, holder string, digests []string, ttl time.Duration) (spec.Hold, error) {
	if err := spec.ValidateHolder(holder); err != nil {
		return spec.Hold{}, err
	}
	req := spec.HoldRequest{Digests: make([]digest.Digest, len(digests))}
	for i, d := range digests {
		req.Digests[i] = digest.Digest(d)
	}
	if ttl != 0 {
		req.TTL = ttl.String()
	}
	data, err := json.Marshal(req)
	if err != nil {
		return spec.Hold{}, err
	}
	path := holdsPath(repo, name) + "/" + url.PathEscape(holder)
	resp, err := a.do(ctx, http.MethodPut, path, bytesBody(data), http.Header{"Content-Type": {"application/json"}})
	if err != nil {
		return spec.Hold{}, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return spec.Hold{}, a.errorFrom(resp, "", false)
	}
	defer resp.Body.Close()
	var hold spec.Hold
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxHoldAnswer)).Decode(&hold); err != nil {
		return spec.Hold{}, fmt.Errorf("PUT %s: undecodable answer: %w", path, err)
	}
	if hold.Holder != holder {
		return spec.Hold{}, fmt.Errorf("PUT %s: the registry answered with the hold of %q", path, hold.Holder)
	}
	return hold, nil
}

// Holds returns the model's unexpired holds, sorted by holder; none for a
// model without holds.
func (a *API) Holds(ctx context.Context, repo, name string) ([]spec.Hold, error) {
	var list spec.HoldList
	if err := a.expect(ctx, http.MethodGet, holdsPath(repo, name), http.StatusOK, &list); err != nil {
		return nil, err
	}
	return list.Holds, nil
}

// ReleaseHold removes the hold named holder from the model. A hold that
// is absent or expired is an error that matches ErrHoldUnknown.
func (a *API) ReleaseHold(ctx context.Context, repo, name, holder string) error {
	if err := spec.ValidateHolder(holder); err != nil {
		return err
	}
	return a.expect(ctx, http.MethodDelete, holdsPath(repo, name)+"/"+url.PathEscape(holder), http.StatusNoContent, nil)
}
