//go:build !linux

package testenv

import (
	"os"
	"testing"
)

// SmallFS is Linux-only: elsewhere the test fails when CI=true and skips.
func SmallFS(t testing.TB, size int64) string {
	t.Helper()
	msg := "full-disk tests mount a tmpfs, which needs Linux"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
