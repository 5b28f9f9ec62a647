package client

import (
	"context"
	"fmt"
	"io"

	"modelx.io/modelx/content"
	"modelx.io/modelx/internal/humanize"
	"modelx.io/modelx/spec"
)

// maxConfigSize bounds the modelx.yaml a client reads into memory.
const maxConfigSize = 1 << 20

// FetchConfig reads the modelx.yaml that config (a manifest's Config)
// describes from the model repo/name, verified against config's size and
// digest; spec.ParseModelConfig reads the bytes.
func (a *API) FetchConfig(ctx context.Context, repo, name string, config spec.Descriptor) ([]byte, error) {
	if config.Size < 0 || config.Size > maxConfigSize {
		return nil, fmt.Errorf("%s of %s/%s is %s, over the %s a client reads", spec.ConfigFileName, repo, name, humanize.Bytes(config.Size), humanize.Bytes(maxConfigSize))
	}
	rc, err := a.GetBlob(ctx, repo, name, config.Digest, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(content.NewReader(rc, config.Size, config.Digest))
	if content.IsMismatch(err) {
		return nil, fmt.Errorf("%s from the registry does not match its digest %s: %w", spec.ConfigFileName, config.Digest, err)
	}
	return data, err
}
