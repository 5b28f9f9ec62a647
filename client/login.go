package client

import (
	"context"
	"net/http"

	"modelx.io/modelx/spec"
)

// Configuration fetches how the registry wants clients to log in.
func (a *API) Configuration(ctx context.Context) (spec.RegistryConfiguration, error) {
	var c spec.RegistryConfiguration
	err := a.expect(ctx, http.MethodGet, spec.ConfigurationPath, http.StatusOK, &c)
	return c, err
}
