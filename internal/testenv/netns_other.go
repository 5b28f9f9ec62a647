//go:build !linux

package testenv

import (
	"os"
	"testing"
)

// InNetworkNamespace needs Linux's network namespaces: elsewhere the test
// fails when CI=true and is skipped otherwise.
func InNetworkNamespace(t *testing.T, prepare ...func(testing.TB)) (parent bool) {
	t.Helper()
	msg := "network namespaces are Linux-only: " + t.Name() + " needs one"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return true
}
