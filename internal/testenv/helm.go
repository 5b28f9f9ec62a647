package testenv

import "testing"

// HelmVersion is the helm release the chart tests render with; keep it in
// step with tools/helm/go.mod and the Makefile.
const HelmVersion = "v3.22.0"

// RequireHelm returns the path of the helm binary `make tools` builds, or
// ends the test as RequireBinary does.
func RequireHelm(t testing.TB) string {
	t.Helper()
	return RequireBinary(t, "helm", HelmVersion)
}
