package client

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client/reference"
)

// TagResult reports a tag.
type TagResult struct {
	// Source is the version that was tagged, as given.
	Source string `json:"source"`
	// Reference is the new tag, REGISTRY/REPOSITORY/NAME@TAG.
	Reference string        `json:"reference"`
	Digest    digest.Digest `json:"digest"`
	// PreviousDigest is the version the tag named before, when the tag
	// moved; empty for a new tag, or one that named this version already.
	PreviousDigest digest.Digest `json:"previous_digest,omitempty"`
}

// Tag points tag at the version src names, on src's model: the manifest is
// stored again under the new tag, byte for byte, so no blob moves and the
// version keeps its digest. A tag that named another version moves; the
// result says which version it named.
func (c *Client) Tag(ctx context.Context, src Reference, tag string) (*TagResult, error) {
	if err := reference.ValidateTag(tag); err != nil {
		return nil, err
	}
	api := c.API(src.Registry)
	_, data, d, err := api.GetManifest(ctx, src.Repository, src.Name, src.ManifestRef())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", src, err)
	}
	dst := Reference{Registry: src.Registry, Repository: src.Repository, Name: src.Name, Tag: tag}
	res := &TagResult{Source: src.String(), Reference: dst.String(), Digest: d}
	if res.PreviousDigest, err = api.ManifestDigest(ctx, dst.Repository, dst.Name, tag); err != nil {
		return nil, fmt.Errorf("read %s: %w", dst, err)
	}
	if res.PreviousDigest == d {
		res.PreviousDigest = ""
		return res, nil // the tag names this version already: nothing to write
	}
	if _, err := api.PutManifest(ctx, dst.Repository, dst.Name, tag, data); err != nil {
		return nil, fmt.Errorf("write %s: %w", dst, err)
	}
	return res, nil
}

// TagMove describes a tag that moved, "TAG: sha256:OLD → sha256:NEW", or
// returns "" when tag named no version before (previous is empty) or the
// same one.
func TagMove(tag string, previous, current digest.Digest) string {
	if previous == "" || previous == current {
		return ""
	}
	return fmt.Sprintf("%s: %s → %s", tag, previous, current)
}
